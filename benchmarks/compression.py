"""Compression paths side by side, from ONE fine-tuned float model, measured in LiteRT.

    .venv/bin/python -m benchmarks.compression [--rounds 31] [--latency-runs 200] [--out r.json]

(a) float .tflite, no optimization (the plain path); (b) post-training full-integer int8;
(c) plain QAT, then int8; (d) prune, then post-training int8; (e) edgetune's path: prune,
prune-preserving QAT, int8; (f) float16 weights. Every path starts from a clone of the same
float weights and uses the default preset's epochs and learning rates. Accuracy is measured
in LiteRT on the test split; latency is the median of per-round medians over interleaved
rounds (one thread), and its ratio to (a) the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    ZOO_ID,
    Progress,
    default_preset,
    emit,
    median,
    prepared_data,
    ratio,
    timed,
)
from edgetune import files, litert
from edgetune.components.common import training

# key -> (label, steps). Order is the table's order; (a) is the reference for every ratio.
VARIANTS = {
    "a_float": ("(a) float32, no optimization", ["fine_tune", "convert"]),
    "f_float16": ("(f) float16 weights", ["fine_tune", "convert fp16"]),
    "b_ptq_int8": ("(b) post-training int8", ["fine_tune", "convert int8"]),
    "c_qat_int8": ("(c) QAT, int8", ["fine_tune", "qat", "convert int8"]),
    "d_prune_ptq_int8": ("(d) prune, post-training int8", ["fine_tune", "prune", "convert int8"]),
    "e_prune_pqat_int8": (
        "(e) edgetune: prune, PQAT, int8",
        ["fine_tune", "prune", "pqat", "convert int8"],
    ),
}
REFERENCE = "a_float"
EDGETUNE = "e_prune_pqat_int8"
_WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def clone(model: Any) -> Any:
    """A new model with the same graph and weights, so no path trains another's weights."""
    import tf_keras as keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def to_float16_tflite(model: Any) -> bytes:
    """float16 weights (dequantized to float32 at load), float32 compute and I/O."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def weight_sparsity(data: bytes) -> float:
    """Fraction of zeros in the weight tensors of conv, depthwise conv and dense ops in a file.

    What the file really carries, after BatchNorm folding and quantization: a zero that
    quantization or folding turned into a non-zero is not counted.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    zeros = total = 0
    for graph in model.subgraphs:
        producer = {out: op for op in graph.operators for out in op.outputs}
        for op in graph.operators:
            name = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
            if name not in _WEIGHT_OPS:
                continue
            tensor_index = op.inputs[1]
            source = producer.get(tensor_index)  # float16 files: weights pass a DEQUANTIZE
            if source is not None and flatbuffer_utils.opcode_to_name(
                model, source.opcodeIndex
            ) in ("DEQUANTIZE",):
                tensor_index = source.inputs[0]
            values = _constant(model, graph.tensors[tensor_index])
            if values is not None:
                zeros += int(np.count_nonzero(values == 0))
                total += values.size
    return zeros / total if total else 0.0


def _constant(model: Any, tensor: Any) -> np.ndarray | None:
    from tensorflow.lite.python import schema_py_generated as schema

    dtypes = {
        schema.TensorType.FLOAT32: np.float32,
        schema.TensorType.FLOAT16: np.float16,
        schema.TensorType.INT8: np.int8,
    }
    data = model.buffers[tensor.buffer].data
    if data is None or tensor.type not in dtypes:
        return None
    return np.frombuffer(np.asarray(data, np.uint8).tobytes(), dtypes[tensor.type])


def train_and_convert(
    data_dir: Path, preset: dict[str, Any], out_dir: Path, log: Progress
) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    """Fine-tunes once, derives every path from clones of that model, writes each .tflite.

    Returns:
        ({variant: {keras_accuracy, keras_sparsity, convert_seconds}}, {step: seconds}).
    """
    from edgetune.components.convert.core import to_float_tflite, to_int8_tflite
    from edgetune.components.fine_tune.core import FineTuneConfig, fine_tune
    from edgetune.components.prune.core import PruneConfig, prune, sparsity
    from edgetune.components.qat.core import QatConfig, quantize_aware_train
    from edgetune.zoo.registry import load_zoo

    seed, batch = preset.get("seed", 0), preset["batch_size"]
    x_train, _ = training.load_split(data_dir, "train")
    x_test, y_test = training.load_split(data_dir, "test")
    pick = np.random.default_rng(seed).permutation(len(x_train))
    representative = x_train[pick[: preset["representative_samples"]]]  # as convert picks them
    keys = ("head_epochs", "unfreeze_epochs", "head_learning_rate", "unfreeze_learning_rate")
    ft_config = FineTuneConfig(
        **{k: preset[k] for k in keys}, batch_size=batch, patience=preset["patience"], seed=seed
    )
    steps: dict[str, float] = {}
    log(f"fine_tune {ZOO_ID} ({ft_config.head_epochs}+{ft_config.unfreeze_epochs} epochs)")
    (float_model, _), steps["fine_tune"] = timed(fine_tune, load_zoo()[ZOO_ID], data_dir, ft_config)
    log(f"fine_tune done in {steps['fine_tune']:.0f} s")

    qat_kw = dict(epochs=preset["qat_epochs"], learning_rate=preset["qat_learning_rate"])
    prune_config = PruneConfig(
        target_sparsity=preset["target_sparsity"],
        epochs=preset["prune_epochs"],
        learning_rate=preset["prune_learning_rate"],
        batch_size=batch,
        seed=seed,
    )
    log("qat (plain, preserve_sparsity=False) on a clone of the float model")
    (qat_model, _), steps["qat"] = timed(
        quantize_aware_train,
        clone(float_model),
        data_dir,
        QatConfig(**qat_kw, batch_size=batch, preserve_sparsity=False, seed=seed),
    )
    log(f"prune to {prune_config.target_sparsity:.0%} on a clone of the float model")
    (pruned, _), steps["prune"] = timed(prune, clone(float_model), data_dir, prune_config)
    log("pqat (prune-preserving QAT) on a clone of the pruned model")
    (pqat_model, _), steps["pqat"] = timed(
        quantize_aware_train,
        clone(pruned),
        data_dir,
        QatConfig(**qat_kw, batch_size=batch, preserve_sparsity=True, seed=seed),
    )
    sources = {
        "a_float": (float_model, to_float_tflite),
        "f_float16": (float_model, to_float16_tflite),
        "b_ptq_int8": (float_model, lambda m: to_int8_tflite(m, representative)),
        "c_qat_int8": (qat_model, lambda m: to_int8_tflite(m, representative)),
        "d_prune_ptq_int8": (pruned, lambda m: to_int8_tflite(m, representative)),
        "e_prune_pqat_int8": (pqat_model, lambda m: to_int8_tflite(m, representative)),
    }
    out: dict[str, dict[str, Any]] = {}
    for key, (model, convert) in sources.items():
        data, seconds = timed(convert, model)
        files.write_bytes(out_dir / f"{key}.tflite", data)
        out[key] = {
            "keras_accuracy": training.accuracy(model, x_test, y_test),
            "keras_sparsity": sparsity(model),
            "convert_seconds": seconds,
        }
        log(f"converted {key}: {len(data):,} bytes in {seconds:.1f} s")
    return out, steps


def latency_rounds(
    paths: dict[str, Path], x: np.ndarray, rounds: int, runs: int, log: Progress
) -> dict[str, list[float]]:
    """Per-round median latency of each file, the variants' order rotated every round."""
    interpreters = {key: litert.load(str(path), num_threads=1) for key, path in paths.items()}
    keys = list(interpreters)
    per_round: dict[str, list[float]] = {key: [] for key in keys}
    for r in range(rounds):
        order = keys[r % len(keys) :] + keys[: r % len(keys)]
        for key in order:
            per_round[key].append(litert.median_latency_ms(interpreters[key], x, runs=runs))
        if (r + 1) % 10 == 0 or r + 1 == rounds:
            log(f"latency round {r + 1}/{rounds}")
    return per_round


def run(work: Path, *, rounds: int = 31, latency_runs: int = 200) -> dict[str, Any]:
    """The whole comparison; the .tflite files are left in `work/tflite/<variant>.tflite`."""
    log = Progress("compression")
    preset = default_preset()
    log("ingest + preprocess of the default data")
    data_dir = prepared_data(preset, work)
    out_dir = work / "tflite"
    trained, steps = train_and_convert(data_dir, preset, out_dir, log)
    x_test, y_test = training.load_split(data_dir, "test")
    paths = {key: out_dir / f"{key}.tflite" for key in VARIANTS}
    per_round = latency_rounds(paths, x_test[:1], rounds, latency_runs, log)
    variants: dict[str, dict[str, Any]] = {}
    for key, (label, path_steps) in VARIANTS.items():
        data = paths[key].read_bytes()
        predicted = np.argmax(litert.predict(litert.load(str(paths[key])), x_test), axis=-1)
        correct = int(np.sum(predicted == y_test))
        variants[key] = {
            "label": label,
            "steps": path_steps,
            "accuracy": correct / len(y_test),
            "correct": correct,
            "size_bytes": len(data),
            "gzip_bytes": files.gzip_size(data),
            "latency_ms_p50": median(per_round[key]),
            "latency_round_medians_ms": [round(v, 4) for v in per_round[key]],
            "tflite_weight_sparsity": weight_sparsity(data),
            **trained[key],
            "train_seconds": sum(steps[s] for s in path_steps if s in steps),
        }
    ref = variants[REFERENCE]
    for v in variants.values():
        v["size_vs_a"] = ratio(v["size_bytes"], ref["size_bytes"])
        v["gzip_vs_a"] = ratio(v["gzip_bytes"], ref["size_bytes"])
        v["gzip_vs_a_gzip"] = ratio(v["gzip_bytes"], ref["gzip_bytes"])
        # Paired: each round's ratio compares two measurements taken moments apart.
        paired = sorted(
            b / a
            for b, a in zip(
                v["latency_round_medians_ms"], ref["latency_round_medians_ms"], strict=True
            )
        )
        v["latency_vs_a"] = median(paired)
        v["latency_vs_a_iqr"] = [paired[len(paired) // 4], paired[(3 * len(paired)) // 4]]
        v["accuracy_points_vs_a"] = (v["accuracy"] - ref["accuracy"]) * 100.0
    log("done")
    return {
        "zoo_id": ZOO_ID,
        "preset": {
            k: preset[k]
            for k in (
                "head_epochs",
                "unfreeze_epochs",
                "prune_epochs",
                "qat_epochs",
                "target_sparsity",
                "batch_size",
                "representative_samples",
                "seed",
            )
        },
        "n_test": len(y_test),
        "latency": {"rounds": rounds, "invokes_per_round": latency_runs, "threads": 1},
        "step_seconds": steps,
        "reference": REFERENCE,
        "edgetune": EDGETUNE,
        "variants": variants,
    }


def main() -> None:
    """Command line: runs the compression comparison in a scratch folder and emits the result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--out", help="also write the JSON result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-compression-") as tmp:
        emit(run(Path(tmp), rounds=args.rounds, latency_runs=args.latency_runs), args.out)


if __name__ == "__main__":
    main()
