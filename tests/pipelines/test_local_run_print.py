"""After the DAG, local-run prints with the real `print`, whatever kfp.local left in place."""

from __future__ import annotations

import builtins

from edgetune.pipelines import edgetune_pipeline, local_run


def test_the_real_print_is_back_after_the_pipeline(tmp_path, monkeypatch):
    real = builtins.print

    def leaves_indented_print(**params):
        # What two ParallelFor branches did in kfp.local 2.17.3: each swaps builtins.print
        # for an indenting one, and the later restore puts the other branch's swap back.
        builtins.print = lambda *a, **k: real("    ", *a, **k)

    monkeypatch.setattr(edgetune_pipeline, "edgetune_pipeline", leaves_indented_print)
    params = {"run_name": "r", "tracking_uri": f"sqlite:///{tmp_path / 'm.db'}"}
    try:
        local_run.run_pipeline(params, tmp_path / "run", cache=False)
        assert builtins.print is real
    finally:
        builtins.print = real
