"""`make federate-local` finds its inputs in the newest run, or in the run it was cached from."""

from __future__ import annotations

import json
import shutil

import pytest
from support import agents as support

from edgetune import files
from edgetune.errors import EdgetuneError
from edgetune.pipelines.federate_local import newest_run, run_inputs


def preprocess_output(run, step="preprocess"):
    folder = run / "kfp" / step / "data"
    folder.mkdir(parents=True)
    (folder / files.PREPROCESSING_SPEC).write_text("{}")
    (folder / "train.npz").write_bytes(b"")
    return folder


def test_a_cached_rerun_takes_preprocess_from_the_run_that_made_it(make_bundle, tmp_path):
    runs = tmp_path / "runs"
    first, rerun = runs / "local-20261130-100000-1", runs / "local-20261130-110000-2"
    made = preprocess_output(first)
    (rerun / "kfp" / "deploy").mkdir(parents=True)
    bundle = shutil.copy(make_bundle("1.0.0", split=support.tiny_split_model()),
                         rerun / "kfp" / "deploy" / "bundle-v1.tar")  # fmt: skip
    (rerun / "summary.json").write_text(json.dumps({"cached": {"preprocess": first.name}}))

    assert newest_run(runs) == rerun
    assert run_inputs(rerun) == (bundle, made)

    (rerun / "summary.json").write_text(json.dumps({"cached": {}}))
    with pytest.raises(EdgetuneError, match="no preprocess output with a training split"):
        run_inputs(rerun)
