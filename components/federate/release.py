"""The bundle a blessed federated round ships: the base bundle with the averaged head, serving split."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from edgetune import files
from edgetune.bundle import VerifiedBundle
from edgetune.bundle_build import build_bundle
from edgetune.components.federate.core import smoke_expected
from edgetune.manifest import MODEL_FILE, SAMPLES_FILE
from edgetune.signing import KeyInput
from edgetune.split import Head

ROUND_KEY = "federated_round"
ORIGIN_KEY = "federated_from"


def round_of(base: VerifiedBundle) -> int:
    """How many federated rounds made `base` (0 for a bundle from the pipeline)."""
    value = base.manifest.lineage.get(ROUND_KEY, "0")
    return int(value) if value.isdigit() else 0


def federated_version(base: VerifiedBundle) -> str:
    """`<pipeline version>-fed<round>`: the version the next round's bundle gets."""
    origin = base.manifest.lineage.get(ORIGIN_KEY, base.version)
    return f"{origin}-fed{round_of(base) + 1}"


def federated_bundle(
    base: VerifiedBundle,
    head: Head,
    out_dir: str | os.PathLike,
    *,
    private_key: KeyInput,
    metrics: dict[str, Any],
) -> Path:
    """Signs the base bundle's files with `head` as its head, serving extractor + head.

    Devices reset their personal heads on it (`personal_head: reset`): the next round trains
    from the averaged head. The smoke set's expected classes are the new head's answers on
    the frozen extractor here.
    """
    split = base.manifest.split
    pixels, expected = smoke_expected(base, head)
    version = federated_version(base)
    origin = base.manifest.lineage.get(ORIGIN_KEY, base.version)
    lineage = {**base.manifest.lineage, ORIGIN_KEY: origin, ROUND_KEY: str(round_of(base) + 1)}
    taken = {MODEL_FILE, SAMPLES_FILE, split.extractor, split.head}
    extra = {name: data for name, data in base.files.items() if name not in taken}
    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(tmp) / MODEL_FILE
        model_path.write_bytes(base.model_bytes)
        return build_bundle(
            files.artifact_dir(out_dir) / files.BUNDLE.format(version=version),
            model_path,
            pixels,
            expected,
            version=version,
            spec=base.manifest.spec,
            metrics=metrics,
            mlflow_run_id=base.manifest.mlflow_run_id,
            data_fingerprint=base.manifest.data_fingerprint,
            private_key=private_key,
            smoke_min_agreement=base.manifest.smoke_min_agreement,
            extra_files=extra,
            lineage=lineage,
            split={split.extractor: base.files[split.extractor], split.head: head.to_bytes()},
            personal_head="reset",
            serve="split",
        )
