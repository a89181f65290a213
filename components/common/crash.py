"""A component that dies from a signal (segfault, abort, OOM kill) is named with the reason.

Python cannot catch a segfault, so the component's MLflow run would stay RUNNING with no
error. `record_fatal_signals` has faulthandler write the fatal signal to a file named in the
run's tags; `death_reason` turns a run that never finished into "killed by SIGSEGV" (or, when
nothing was written, as with SIGKILL from the out-of-memory killer, says that much).
"""

from __future__ import annotations

import faulthandler
import tempfile
from pathlib import Path
from typing import IO, Any

TAG_FAULT_LOG = "edgetune.fault_log"
# faulthandler's first line names the signal ("Fatal Python error: Segmentation fault").
SIGNALS = {
    "Segmentation fault": "SIGSEGV",
    "Aborted": "SIGABRT",
    "Bus error": "SIGBUS",
    "Floating-point exception": "SIGFPE",
    "Floating point exception": "SIGFPE",
    "Illegal instruction": "SIGILL",
}
_open_logs: list[IO[str]] = []  # kept open for faulthandler for the process's lifetime


def record_fatal_signals(run_id: str) -> str:
    """Makes a fatal signal in this process leave its name in a file; returns the file."""
    path = Path(tempfile.gettempdir()) / f"edgetune-fault-{run_id}.log"
    log = open(path, "w")  # noqa: SIM115 - faulthandler writes to it until the process ends
    _open_logs.append(log)
    faulthandler.enable(file=log, all_threads=False)
    return str(path)


def death_reason(run: Any) -> str | None:
    """Why a component run never finished, or None if it finished (or is still going)."""
    if run.info.status != "RUNNING" and run.info.end_time:
        return None
    path = run.data.tags.get(TAG_FAULT_LOG, "")
    text = Path(path).read_text(errors="replace") if path and Path(path).is_file() else ""
    for words, signal in SIGNALS.items():
        if words in text:
            return f"killed by {signal}"
    return "died without a Python error (killed by a signal, e.g. SIGKILL when out of memory)"
