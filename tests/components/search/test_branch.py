"""A candidate's branch writes the file its spec names; the Pareto plot draws every row."""

import numpy as np
import pytest
from support.models import ROOMY_DEVICE, model_ready

from edgetune import litert
from edgetune.components.search import branch, pareto
from edgetune.components.search.core import CandidateSpec
from edgetune.components.search.distill import DistillSettings


@pytest.mark.slow
@pytest.mark.parametrize(
    ("quantization", "dtype"),
    [("ptq_int8", np.int8), ("float16", np.float32), ("int16x8", np.int16)],
)
def test_unpruned_teacher_branch_writes_the_quantization_it_names(
    float_run, tmp_path, quantization, dtype
):
    x, _ = model_ready(float_run.data_dir, "train")
    spec = CandidateSpec("teacher", 0.0, quantization)
    model = branch.student_model(spec, float_run.model, np.zeros((1, 3)), float_run.data_dir,
                                 ROOMY_DEVICE, DistillSettings())  # fmt: skip
    assert model is not float_run.model  # a clone: branches never share weights

    path, stages = branch.compress(spec, model, float_run.data_dir, x[:16], tmp_path,
                           prune_config=None, qat_config=None)  # fmt: skip

    assert stages == {}  # neither pruned nor QAT'd
    interpreter = litert.load(str(path))
    assert interpreter.get_input_details()[0]["dtype"] == dtype


def test_pareto_plot_is_a_png_with_every_path(tmp_path):
    rows = [
        {"name": "a", "path": "prune+ptq_int8", "accuracy": 0.97, "flash_bytes": 90_000, "arena_bytes": 20_000},
        {"name": "b", "path": "distil+ptq_int8", "accuracy": 0.95, "flash_bytes": 30_000, "arena_bytes": 9_000},
    ]  # fmt: skip
    out = pareto.pareto_plot(rows, tmp_path / "p.png", chosen="b", accuracy_floor=0.96)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5_000
