"""Every zoo architecture and the model-file path through the whole compression chain.

At small size, random weights, no download: backbone (flattened, renamed) → fine_tune →
prune → QAT (or its fallback) → int8 → LiteRT. (convert's float file and arena measurement
are tested in tests/components/convert; here they would only add time.) The int8 file's argmax agreement with the
model it came from, on the calibration inputs, is recorded (pytest's record_property), not
asserted to a figure: random-weight models after one epoch say little about accuracy.
"""

from __future__ import annotations

import numpy as np
import pytest
from support import models as support

from edgetune import files, litert
from edgetune.components.common import training
from edgetune.components.convert.arena import full_integer_problem
from edgetune.components.convert.core import to_int8_tflite
from edgetune.components.fine_tune.core import FineTuneConfig, fine_tune
from edgetune.components.prune.core import PruneConfig, prune
from edgetune.components.qat.core import QatConfig, quantize_aware_train
from edgetune.preprocessing import PreprocessSpec
from edgetune.zoo.registry import ZooEntry

COUNTS = {"train": 32, "val": 12, "test": 12}


def data_for(entry: ZooEntry, root) -> str:
    """The bar images resized (nearest) to the entry's input, as preprocess writes them."""
    height, width, channels = entry.input_shape
    for i, (split, n) in enumerate(COUNTS.items()):
        x, y = support.bar_images(n, 100 + i)
        rows = np.arange(height) * support.SIZE // height
        cols = np.arange(width) * support.SIZE // width
        x = np.repeat(x[:, rows][:, :, cols], channels, axis=-1)
        np.savez(files.split_file(root, split), x=x, y=y)
    spec = PreprocessSpec(height, width, channels, labels=support.LABELS, **entry.normalization)
    files.write_json(root / files.PREPROCESSING_SPEC, spec.to_dict())
    return root


def run_chain(entry: ZooEntry, tmp_path, record_property, *, pretrained: bool) -> dict:
    data = data_for(entry, tmp_path)
    tuned, _ = fine_tune(
        entry,
        data,
        FineTuneConfig(head_epochs=1, unfreeze_epochs=0, batch_size=16, patience=0),
        pretrained=pretrained,
    )
    names = [layer.name for layer in tuned.layers]
    assert len(names) == len(set(names))
    assert not any(hasattr(layer, "layers") for layer in tuned.layers)  # one flat graph
    pruned, prune_report = prune(
        tuned, data, PruneConfig(target_sparsity=0.3, epochs=1, batch_size=16)
    )
    qat, qat_report = quantize_aware_train(pruned, data, QatConfig(epochs=1, batch_size=16))
    x_train, _ = training.load_split(data, "train")
    files.write_bytes(tmp_path / "q.tflite", to_int8_tflite(qat, x_train))
    int8 = litert.predict(litert.load(str(tmp_path / "q.tflite")), x_train)
    agreement = float(
        np.mean(np.argmax(int8, -1) == np.argmax(qat.predict(x_train, verbose=0), -1))
    )
    record_property("int8_argmax_agreement", agreement)
    record_property("qat_mode", qat_report["mode"])
    assert np.all(np.isfinite(int8))
    assert prune_report["sparsity"] > 0.2
    assert qat_report["mode"] in ("qat", "qat-partial", "ptq-fallback")
    problem = full_integer_problem(tmp_path / "q.tflite")
    record_property("full_integer_problem", problem)
    return {"qat": qat_report, "full_integer_problem": problem, "agreement": agreement}


def zoo_entry(architecture: str, arguments: dict, shape=(32, 32, 3)) -> ZooEntry:
    return ZooEntry(
        id=architecture,
        architecture=architecture,
        arguments=arguments,
        input_shape=shape,
        normalization={"scale": 1 / 255, "offset": 0.0},
        weights={"source": "keras-imagenet", "cache_file": "none.h5"},
        params=0,
        macs=0,
        peak_activation_bytes=0,
        top1=0.0,
        unfreeze_top_layers=5,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("architecture", "arguments"),
    [
        ("keras:MobileNetV2", {"alpha": 0.35}),
        # Rescaling, hard-swish (TF ops) and squeeze-excite Multiply inside: QAT falls back
        ("keras:MobileNetV3Small", {"alpha": 0.75, "minimalistic": False}),
        ("keras:EfficientNetB0", {}),
    ],
)
def test_every_zoo_architecture_compresses_to_a_working_int8_file(
    architecture, arguments, tmp_path, record_property
):
    result = run_chain(
        zoo_entry(architecture, arguments), tmp_path, record_property, pretrained=False
    )

    assert result["full_integer_problem"] == ""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["keras2", "keras3"])
def test_a_model_file_compresses_to_a_working_int8_file(kind, tmp_path, record_property):
    import keras
    import tf_keras

    from edgetune.zoo.model_source import entry_for_model_file

    k = tf_keras if kind == "keras2" else keras
    i = k.Input((16, 16, 1))
    x = k.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(i)
    x = k.layers.BatchNormalization()(x)
    x = k.layers.Activation("relu")(x)
    residual = k.layers.Conv2D(16, 1, strides=2, padding="same")(x)
    x = k.layers.SeparableConv2D(16, 3, padding="same")(x)
    x = k.layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = k.layers.add([x, residual])
    x = k.layers.Conv2D(7, 3, padding="same")(x)  # an all-convolutional classifier (mini-Xception)
    x = k.layers.GlobalAveragePooling2D()(x)
    path = tmp_path / ("model.h5" if kind == "keras2" else "model.keras")
    k.Model(i, k.layers.Activation("softmax", name="predictions")(x)).save(path)

    entry, loaded = entry_for_model_file(str(path))
    result = run_chain(entry, tmp_path, record_property, pretrained=True)

    assert loaded["kind"].startswith(kind) and loaded["max_abs_diff"] < 1e-5
    assert entry.macs > 0 and entry.arena_bytes > 0
    assert result["full_integer_problem"] == ""
