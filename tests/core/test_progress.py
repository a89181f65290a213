"""Progress: a rich bar on a terminal, one plain line per tenth elsewhere."""

from __future__ import annotations

import io

from edgetune import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_not_a_terminal_prints_one_line_per_tenth():
    stream = io.StringIO()
    report = progress.reporter("ingest", stream=stream)

    for done in range(101):
        report(done, 100)

    lines = stream.getvalue().splitlines()
    assert len(lines) == 11 and "\x1b" not in stream.getvalue()
    assert lines[0].startswith("ingest: 0/100 (0%)") and lines[-1].startswith(
        "ingest: 100/100 (100%)"
    )


def test_a_terminal_gets_a_rich_bar_and_a_final_line():
    stream = Terminal()
    report = progress.reporter("decode", stream=stream)

    for done in range(51):
        report(done, 50)

    out = stream.getvalue()
    assert "\x1b[" in out  # rich drew (and then removed) a live bar
    assert "decode: 50/50 (100%)" in out.rstrip().splitlines()[-1]
