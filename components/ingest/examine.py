"""The one pass over a source: every file read, decoded and hashed, in bounded chunks.

Accepted images go straight to a Parquet file of encoded bytes (one row group per chunk);
only their metadata stays in memory, so the pass holds at most one chunk of images at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from edgetune.components.ingest.sources import Item, Listing
from edgetune.preprocessing import ImageDecodeError, decode_image

# Reads overlap network latency on s3:// and gs://; Pillow releases the GIL while it inflates.
_WORKERS = 8
# An image whose every channel spans at most this many levels shows nothing (JPEG noise aside).
_NEAR_EMPTY_LEVELS = 2

Progress = Callable[[int, int], None]

ACCEPTED_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("label", pa.string()),
        ("sha256", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("mode", pa.string()),
        ("image", pa.binary()),
    ]
)


@dataclass(frozen=True)
class Accepted:
    """What ingest keeps in memory about an accepted image (its bytes are on disk)."""

    path: str
    label: str
    sha256: str
    width: int
    height: int
    mode: str
    format: str
    near_empty: bool


@dataclass(frozen=True)
class Quarantined:
    """A file ingest refused, and why."""

    file: str
    kind: str  # a short reason, used to count files by reason
    reason: str  # the full reason
    label: str | None = None

    def to_dict(self) -> dict[str, str]:
        """The entry of ingest_report.json's quarantine list: file, full reason and short kind."""
        return {"file": self.file, "reason": self.reason, "kind": self.kind}


def examine_all(
    listing: Listing, accepted_path: Path, max_pixels: int, progress: Progress | None
) -> tuple[list[Accepted], list[Quarantined]]:
    """Examines every entry; writes accepted images (with bytes) to `accepted_path`."""
    accepted: list[Accepted] = []
    quarantined: list[Quarantined] = []
    done = 0

    def work(entry: object) -> tuple[Accepted | Quarantined, bytes]:
        item = listing.load(entry)
        return examine(item, max_pixels), item.data

    with (
        ThreadPoolExecutor(_WORKERS) as pool,
        pq.ParquetWriter(accepted_path, ACCEPTED_SCHEMA) as writer,
    ):
        for chunk in listing.chunks():
            kept: list[tuple[Accepted, bytes]] = []
            for result, data in pool.map(work, chunk):
                done += 1
                if isinstance(result, Accepted):
                    kept.append((result, data))
                else:
                    quarantined.append(result)
                if progress is not None:
                    progress(done, listing.total)
            if kept:
                writer.write_table(_table(kept))
            accepted.extend(row for row, _ in kept)
    return accepted, quarantined


def examine(item: Item, max_pixels: int) -> Accepted | Quarantined:
    """Decodes one item: what ingest keeps of it, or why it is quarantined."""
    if item.error is not None:
        kind = "not found" if item.error == "not found" else "cannot read"
        return Quarantined(item.path, kind, item.error, item.label)
    if item.label is None:
        return Quarantined(item.path, "no label", "no label")
    try:
        decoded = decode_image(item.data, item.path, max_pixels=max_pixels)
    except ImageDecodeError as e:
        reason = str(e).removeprefix(f"{item.path}: ")
        return Quarantined(item.path, e.kind, reason, item.label)
    width, height = decoded.size
    return Accepted(
        path=item.path,
        label=item.label,
        sha256=hashlib.sha256(item.data).hexdigest(),
        width=width,
        height=height,
        mode=decoded.mode,
        format=decoded.format,
        near_empty=all(hi - lo <= _NEAR_EMPTY_LEVELS for lo, hi in _extrema(decoded.image)),
    )


def _extrema(image: object) -> list[tuple[int, int]]:
    # Alpha aside: a fully opaque or fully transparent alpha says nothing about the content.
    colour = image.convert("RGB") if image.mode in ("RGBA", "LA") else image  # type: ignore[attr-defined]
    extrema = colour.getextrema()
    return [extrema] if isinstance(extrema[0], int) else list(extrema)


def _table(kept: list[tuple[Accepted, bytes]]) -> pa.Table:
    rows = [r for r, _ in kept]
    return pa.table(
        {
            "path": pa.array([r.path for r in rows], pa.string()),
            "label": pa.array([r.label for r in rows], pa.string()),
            "sha256": pa.array([r.sha256 for r in rows], pa.string()),
            "width": pa.array([r.width for r in rows], pa.int32()),
            "height": pa.array([r.height for r in rows], pa.int32()),
            "mode": pa.array([r.mode for r in rows], pa.string()),
            "image": pa.array([data for _, data in kept], pa.binary()),
        },
        schema=ACCEPTED_SCHEMA,
    )
