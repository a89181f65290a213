"""Where and with what a benchmark ran: cores, CPU model, memory, load, library versions, date.

.venv/bin/python -m benchmarks.machine
"""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, emit

LIBRARIES = (
    "tensorflow",
    "tf-keras",
    "tensorflow-model-optimization",
    "ai-edge-litert",
    "kfp",
    "mlflow",
    "numpy",
)


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The first `model name` in /proc/cpuinfo (what the kernel calls the CPU)."""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float | None:
    """Total memory in GiB from /proc/meminfo, or None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def versions() -> dict[str, str]:
    """The installed version of each library in LIBRARIES ("not installed" when missing)."""
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def git_commit() -> str:
    """The repository's short HEAD commit, or "unknown" outside a git checkout."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha


def load_average() -> list[float]:
    """1, 5 and 15-minute load: how busy the (shared) machine was."""
    return [round(x, 2) for x in os.getloadavg()]


def describe() -> dict[str, Any]:
    """The machine, the date, the load and the library versions a benchmark ran with."""
    return {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "memory_gib": memory_gib(),
        "gpu": "none used (CPU only)",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_start": load_average(),
        "git_commit": git_commit(),
        "versions": versions(),
    }


def main() -> None:
    """Command line: prints the machine description as JSON."""
    emit(describe(), None)


if __name__ == "__main__":
    main()
