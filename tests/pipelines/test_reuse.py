"""A local run's cache hits are named by step and earlier run, from the artifacts' folders."""

from edgetune.pipelines.reuse import _origin


def test_a_cached_artifact_names_its_run_and_step():
    uri = "/w/runs/local-1/kfp/edgetune-2026/select-model/selection"

    assert _origin(uri) == ("local-1", "select_model")


def test_an_artifact_outside_a_run_folder_names_nothing():
    assert _origin("/tmp/model") is None
    assert _origin("/w/runs/local-1/other/job/fine-tune/model") is None
