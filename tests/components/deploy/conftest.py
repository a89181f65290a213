"""A preprocess output for the tiny 8x8x1 test model (tests/support/agents.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support import agents as support

from edgetune import files


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """The spec and a 10-image test split of random pixels."""
    out = tmp_path / "data"
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (10, 8, 8, 1), dtype=np.uint8)
    np.savez(files.split_file(files.artifact_dir(out), "test"), x=x, y=np.arange(10) % 3)
    files.write_json(out / files.PREPROCESSING_SPEC, support.SPEC.to_dict())
    return out
