"""The release deploy ships: a signed bundle of the registered int8 file and its smoke set."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgetune import files, firmware, litert
from edgetune.bundle_build import build_bundle
from edgetune.components.common import training
from edgetune.components.convert.split import split_files
from edgetune.errors import EdgetuneError
from edgetune.preprocessing import normalize

if TYPE_CHECKING:
    from edgetune.components.evaluate.core import Evaluation


def bundle_version(registered_version: str) -> str:
    """The bundle's release name: the registry version of the int8 file, as `v<N>`."""
    return f"v{registered_version}"


def smoke_samples(data_dir: str | os.PathLike, n: int) -> np.ndarray:
    """The device's smoke test: the first `n` raw uint8 images of preprocess's test split."""
    return training.load_pixels(data_dir, "test")[0][:n]


def make_bundle(
    out_dir: str | os.PathLike,
    model_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    evaluation: Evaluation,
    data_fingerprint: str,
    *,
    signing_key: str,
    smoke_count: int,
    mlflow_run_id: str | None,
    lineage: dict[str, str] | None = None,
    personal_head: str = "reset",
) -> Path:
    """Signs `bundle-v<registered version>.tar` in `out_dir`: the int8 file, its spec, smoke set.

    The firmware C sources (model_data.h/.cc) and the split model (extractor.tflite, head.npz)
    ship too when convert wrote them beside the file.

    Args:
        out_dir: where the bundle goes (created if needed).
        model_dir: convert's int8 output folder (model.tflite, model_data.h/.cc).
        data_dir: preprocess's output folder (preprocessing spec, test split).
        evaluation: evaluate's output, registered: the version and the metrics shipped.
        data_fingerprint: ingest's dataset fingerprint, for lineage.
        signing_key: the Ed25519 private key (PEM text or file).
        smoke_count: how many test images the device checks itself on.
        mlflow_run_id: the run that made the bundle, for lineage.
        lineage: the manifest's lineage (parent run, commit, data, parameters' hash, ...).
        personal_head: `keep` or `reset`: what devices do with heads they trained themselves.

    The smoke set's expected classes are the int8 file's own answers in LiteRT, so a device
    that disagrees runs the model differently; the bundle carries the int8 headline metrics.

    Raises:
        EdgetuneError: no signing key, or a bad bundle argument.
    """
    if not signing_key:
        raise EdgetuneError(
            "deploy needs signing_key: an Ed25519 private key (PEM); make one with `edgetune keygen`"
        )
    spec = training.load_spec(data_dir)
    samples = smoke_samples(data_dir, smoke_count)
    model_path = Path(model_dir) / files.TFLITE_MODEL
    interpreter = litert.load(str(model_path))
    expected = np.argmax(litert.predict(interpreter, normalize(samples, spec)), axis=-1)
    version = bundle_version(evaluation.registered_version)
    return build_bundle(
        files.artifact_dir(out_dir) / files.BUNDLE.format(version=version),
        model_path,
        samples,
        expected,
        version=version,
        spec=spec,
        metrics=evaluation.headline("tflite_int8"),
        mlflow_run_id=mlflow_run_id,
        data_fingerprint=data_fingerprint,
        private_key=signing_key,
        extra_files=firmware.read_sources(model_dir),  # the C array convert wrote, signed too
        lineage=lineage,
        split=split_files(model_dir),
        personal_head=personal_head,
    )
