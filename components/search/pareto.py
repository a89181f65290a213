"""The search's picture: accuracy against flash, one marker per candidate.

Marker area grows with the arena, colour says the compression path, the chosen candidate is
ringed, and the float teacher's accuracy minus the budget is a dashed line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgetune import files


def pareto_plot(
    rows: Sequence[Mapping[str, Any]],
    out: str | os.PathLike,
    *,
    chosen: str | None,
    accuracy_floor: float | None = None,
) -> Path:
    """Writes a PNG of `rows` (each with name, path, accuracy, flash_bytes, arena_bytes).

    Returns:
        `out` as a Path, written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display in a component or a test
    import matplotlib.pyplot as plt

    paths = sorted({r["path"] for r in rows})
    colours = {p: plt.get_cmap("tab10")(i % 10) for i, p in enumerate(paths)}
    largest = max((r["arena_bytes"] for r in rows), default=1) or 1
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for p in paths:
        mine = [r for r in rows if r["path"] == p]
        ax.scatter(
            [r["flash_bytes"] / 1024 for r in mine],
            [r["accuracy"] * 100 for r in mine],
            s=[30 + 370 * r["arena_bytes"] / largest for r in mine],
            color=colours[p],
            alpha=0.7,
            label=p,
        )
    for r in rows:
        if r["name"] == chosen:
            ax.scatter(r["flash_bytes"] / 1024, r["accuracy"] * 100, s=500,
                       facecolors="none", edgecolors="black", linewidths=1.5)  # fmt: skip
            ax.annotate("chosen", (r["flash_bytes"] / 1024, r["accuracy"] * 100),
                        textcoords="offset points", xytext=(8, 8))  # fmt: skip
    if accuracy_floor is not None:
        ax.axhline(accuracy_floor * 100, linestyle="--", color="grey", label="float - budget")
    ax.set_xlabel("flash (KiB, the .tflite file)")
    ax.set_ylabel("test accuracy (%, shipped file in LiteRT)")
    ax.set_title("Compression candidates (marker area: TFLite Micro arena)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with files.atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(out)
