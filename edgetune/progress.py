"""Progress for people, log lines for machines.

On a terminal a rich progress bar; otherwise (a KFP pod, a kfp.local subprocess, CI) one
plain line every tenth of the work, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

ProgressCallback = Callable[[int, int], None]


def reporter(what: str, *, stream: TextIO | None = None) -> ProgressCallback:
    """A `progress(done, total)` callback for the work called `what`.

    On a terminal it draws a rich progress bar (removed when `done == total` and replaced by
    one summary line); elsewhere it prints `what: done/total (pct) elapsed` at every tenth.
    """
    stream = stream or sys.stdout
    if stream.isatty():
        return _bar(what, stream)
    return _lines(what, stream)


def _lines(what: str, stream: TextIO) -> ProgressCallback:
    start = time.perf_counter()
    last_decile = -1

    def progress(done: int, total: int) -> None:
        nonlocal last_decile
        decile = (10 * done // total) if total else 10
        if decile == last_decile and done != total:
            return
        last_decile = decile
        pct = 100.0 * done / total if total else 100.0
        stream.write(f"{what}: {done}/{total} ({pct:.0f}%) {time.perf_counter() - start:.1f}s\n")
        stream.flush()

    return progress


def _bar(what: str, stream: TextIO) -> ProgressCallback:
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(file=stream),
        transient=True,
    )
    task = None
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task(what, total=total)
        bar.update(task, completed=done, total=total)
        if done >= total:
            bar.stop()
            stream.write(f"{what}: {done}/{total} (100%) {time.perf_counter() - start:.1f}s\n")
            stream.flush()
            task = None  # a second pass over the same work starts a new bar

    return progress
