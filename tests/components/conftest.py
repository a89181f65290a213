"""Component tests make many pipeline runs in one process, with no rival creating a parent."""

import os

import pytest

from edgetune.components.common import tracking


@pytest.fixture(autouse=True)
def quick_parent_settle(monkeypatch):
    """No need to wait a second for a rival parent run (test_parent_run races real ones)."""
    monkeypatch.setattr(tracking, "PARENT_SETTLE_S", 0.05)


@pytest.fixture(autouse=True)
def run_context_env_restored(monkeypatch):
    """mlflow.set_tracking_uri/set_experiment write os.environ, which the run context reads
    first: each test gets back the environment it started with."""
    for name in (tracking.TRACKING_URI_ENV, tracking.EXPERIMENT_ENV, "MLFLOW_EXPERIMENT_ID"):
        before = os.environ.get(name)
        monkeypatch.setenv(name, before or "unset")  # recorded: restored after the test
        if before is None:
            monkeypatch.delenv(name)
