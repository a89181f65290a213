"""A component killed by a signal is named in summary.json as `step: killed by SIGNAL`."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from edgetune.components.common import summary, tracking

# A component process that dies inside its MLflow run, as a TensorFlow segfault would.
DYING_COMPONENT = """
import os, signal, sys
from edgetune.components.common import tracking
with tracking.component_run("prune", run_name=sys.argv[1], tracking_uri=sys.argv[2]):
    os.kill(os.getpid(), getattr(signal, sys.argv[3]))
"""


@pytest.mark.parametrize(
    ("sig", "reason"),
    [
        ("SIGSEGV", "killed by SIGSEGV"),
        (
            "SIGKILL",
            "died without a Python error (killed by a signal, e.g. SIGKILL when out of memory)",
        ),
    ],
)
def test_a_component_killed_by_a_signal_is_named_with_the_signal(
    tracking_uri, run_name, sig, reason
):
    done = subprocess.run(
        [sys.executable, "-c", DYING_COMPONENT, run_name, tracking_uri, sig],
        capture_output=True,
        check=False,
    )
    assert done.returncode == -getattr(signal, sig)
    with tracking.component_run("ingest", run_name=run_name, tracking_uri=tracking_uri):
        pass  # a component that finished: no error
    experiment_id = tracking.use_experiment(tracking_uri, tracking.DEFAULT_EXPERIMENT)
    parent = tracking.find_parent_run(experiment_id, run_name)

    result = summary.build_summary(experiment_id, parent, status="FAILED")

    assert result["errors"] == {"prune": reason}
