"""Component tests make many pipeline runs in one process, with no rival creating a parent."""

import pytest

from edgetune.components.common import tracking


@pytest.fixture(autouse=True)
def quick_parent_settle(monkeypatch):
    """No need to wait a second for a rival parent run (test_parent_run races real ones)."""
    monkeypatch.setattr(tracking, "PARENT_SETTLE_S", 0.05)


@pytest.fixture(autouse=True)
def run_context_env_cleared(monkeypatch):
    """mlflow.set_tracking_uri/set_experiment write os.environ, which the run context reads
    first: each test starts without them (an earlier test's store would win over its inputs)."""
    names = (tracking.TRACKING_URI_ENV, tracking.EXPERIMENT_ENV, "MLFLOW_EXPERIMENT_ID",
             tracking.RUN_NAME_ENV, tracking.PIPELINE_RUN_ID_ENV, tracking.PARENT_RUN_ID_ENV)  # fmt: skip
    for name in names:
        monkeypatch.setenv(name, "unset")  # recorded: what was there comes back after the test
        monkeypatch.delenv(name)
