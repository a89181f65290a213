"""What every benchmark shares: the default data, progress lines, medians and ratios.

The default data goes through the real ingest and preprocess.

Nothing here imports TensorFlow at import time.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import edgetune  # noqa: F401 - sets TF_USE_LEGACY_KERAS before TensorFlow
from edgetune.components.ingest.core import ingest
from edgetune.components.preprocess.core import AugmentPolicy, preprocess
from edgetune.demo_data import write_demo_digits
from edgetune.pipelines.params import resolve_preset
from edgetune.preprocessing import PreprocessSpec
from edgetune.zoo.registry import load_zoo

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
ZOO_ID = "edgetune-digitnet-32"
PRESET = "default"


def default_preset(name: str = PRESET) -> dict[str, Any]:
    """The preset with a relative `data_uri` resolved against the repository, not the cwd."""
    preset = resolve_preset(name)
    data = Path(preset["data_uri"])
    preset["data_uri"] = str(data if data.is_absolute() else REPO / data)
    return preset


def prepared_data(preset: dict, work: Path, timings: dict[str, float] | None = None) -> Path:
    """The preset's data through the real ingest and preprocess, as the pipeline runs them.

    Args:
        preset: pipeline parameters (data_uri, split fractions, augment, seed).
        work: a scratch folder; `work/dataset` (ingest) and `work/data` (preprocess) are written.
        timings: if given, receives the seconds of `ingest` and `preprocess`.

    Returns:
        The preprocess output folder (train/val/test .npz and the preprocessing spec).
    """
    data = Path(preset["data_uri"])
    if not data.exists():
        write_demo_digits(data)
    start = time.perf_counter()
    report = ingest(
        str(data),
        work / "dataset",
        val_fraction=preset.get("val_fraction", 0.15),
        test_fraction=preset.get("test_fraction", 0.15),
        max_quarantine_fraction=preset.get("max_quarantine_fraction", 0.05),
        min_per_class=preset.get("min_per_class", 5),
    )
    ingested = time.perf_counter()
    entry = load_zoo()[ZOO_ID]
    h, w, c = entry.input_shape
    spec = PreprocessSpec(
        height=h, width=w, channels=c, labels=report.classes, **entry.normalization
    )
    preprocess(
        work / "dataset",
        work / "data",
        spec=spec,
        policy=AugmentPolicy.from_dict(preset.get("augment")),
        seed=preset.get("seed", 0),
    )
    if timings is not None:
        timings["ingest"] = ingested - start
        timings["preprocess"] = time.perf_counter() - ingested
    return work / "data"


class Progress:
    """Plain progress lines, `[section +12s] message`, flushed at once (logs, pipes, make)."""

    def __init__(self, section: str) -> None:
        self.section = section
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        """Prints `message` to stderr, prefixed with the section and the seconds since it started."""
        elapsed = time.perf_counter() - self.start
        print(f"[{self.section} +{elapsed:.0f}s] {message}", file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    """The median of `values` as a plain float."""
    return float(statistics.median(values))


def ratio(value: float | None, reference: float | None) -> float | None:
    """`value / reference`, or None when either is missing (or the reference is zero)."""
    if value is None or not reference:
        return None
    return value / reference


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    """`fn(*args, **kwargs)` and its wall seconds."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def emit(result: dict[str, Any], out: str | None) -> None:
    """A standalone run's result: printed as JSON, and written to `out` when given."""
    text = json.dumps(result, indent=2, default=float)
    if out:
        Path(out).write_text(text + "\n")
    print(text)
