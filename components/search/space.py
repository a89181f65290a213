"""The search step's plan: the candidates of the declared space, and the teacher's logits once.

The list goes to the DAG's `dsl.ParallelFor`; the logits (only when a student is in the
space) go to every branch that distils, so the teacher predicts the training split once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgetune import files
from edgetune.components.search.core import TEACHER, SearchConfig, candidates
from edgetune.config import DeviceProfile

LOGITS_FILE = "teacher_logits.npy"
SPACE_FILE = "space.json"


def plan(
    config: SearchConfig,
    device: DeviceProfile,
    fixed_sparsity: float,
    teacher_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
) -> list[dict[str, Any]]:
    """The candidates as dicts (`CandidateSpec.to_dict`), written with the space to `out_dir`.

    When a student is among them, the teacher's logits on the training split go to
    `out_dir/teacher_logits.npy`.

    Raises:
        EdgetuneError: the space is empty, contradictory or cannot produce a file the device
            runs (`candidates`).
    """
    specs = candidates(config, device, fixed_sparsity)
    out = files.artifact_dir(out_dir)
    if any(s.student != TEACHER for s in specs):
        import numpy as np

        from edgetune.components.common import training
        from edgetune.components.search.distill import teacher_logits

        x, _ = training.load_split(data_dir, "train")
        logits = teacher_logits(training.load_model_artifact(teacher_dir), x)
        with files.atomic_path(out / LOGITS_FILE) as tmp, open(tmp, "wb") as f:
            np.save(f, logits)
    rows = [s.to_dict() for s in specs]
    files.write_json(out / SPACE_FILE, {"config": config.model_dump(), "candidates": rows})
    return rows


def load_logits(space_dir: str | os.PathLike) -> Any:
    """The teacher's logits the plan wrote, or None when no student needs them."""
    path = Path(space_dir) / LOGITS_FILE
    if not path.is_file():
        return None
    import numpy as np

    return np.load(path)
