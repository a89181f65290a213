"""Progress for people, log lines for machines.

On a terminal a rich progress bar; otherwise (a KFP pod, a kfp.local subprocess, CI) one
plain line every tenth of the work, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def reporter(what: str, *, stream=None) -> Callable[[int, int], None]:
    """A `progress(done, total)` callback that prints `what: done/total (pct) elapsed`."""
    stream = stream or sys.stdout
    start = time.perf_counter()
    last_decile = -1

    def progress(done: int, total: int) -> None:
        nonlocal last_decile
        decile = (10 * done // total) if total else 10
        if decile == last_decile and done != total:
            return
        last_decile = decile
        pct = 100.0 * done / total if total else 100.0
        print(
            f"{what}: {done}/{total} ({pct:.0f}%) {time.perf_counter() - start:.1f}s",
            file=stream,
            flush=True,
        )

    return progress
