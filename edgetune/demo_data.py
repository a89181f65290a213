"""The demo data set: the UCI handwritten digits that ship with scikit-learn, as a PNG folder.

1,797 grey 8x8 digits, one sub-folder per digit: the layout `ingest` reads, and small enough
to run the whole pipeline on a laptop with no download.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from edgetune import files
from edgetune.errors import EdgetuneError

# load_digits stores ink as 0..16; PNG wants 0..255.
DIGITS_MAX_VALUE = 16


def digit_pixels(values: np.ndarray) -> np.ndarray:
    """Maps UCI digit values 0..16 to uint8 grey 0..255 (bright ink on black, like MNIST)."""
    return np.floor(np.asarray(values, dtype=np.float64) * 255 / DIGITS_MAX_VALUE + 0.5).astype(
        np.uint8
    )


def write_demo_digits(out: str | os.PathLike, force: bool = False) -> int:
    """Writes the scikit-learn digits as `out/<digit>/<index:04d>.png`.

    The folder is built beside `out` and renamed into place, so `out` is either the complete
    set or untouched. A folder that holds anything other than demo digits is never replaced.

    Args:
        out: the folder to create.
        force: rewrite even when `out` already holds the complete set.

    Returns:
        The number of images written, or 0 when `out` already held the complete set.

    Raises:
        EdgetuneError: `out` exists and holds files that are not demo digits.
    """
    from sklearn.datasets import load_digits  # scikit-learn is slow to import; only here

    digits = load_digits()
    out = Path(out)
    expected = _expected_files(digits.target)
    if out.exists():
        _refuse_foreign(out)
        if not force and all((out / rel).is_file() for rel in expected):
            return 0
    with files.atomic_dir(out) as tmp:
        for rel, values in zip(expected, digits.images, strict=True):
            (tmp / rel).parent.mkdir(exist_ok=True)
            Image.fromarray(digit_pixels(values)).save(tmp / rel, format="PNG")
    return len(expected)


def _expected_files(targets: np.ndarray) -> list[Path]:
    return [Path(str(int(digit))) / f"{index:04d}.png" for index, digit in enumerate(targets)]


def _refuse_foreign(out: Path) -> None:
    # Replacing `out` deletes it: only ever do that to a folder this function wrote.
    if not out.is_dir():
        raise EdgetuneError(f"{out}: exists and is not a folder; choose another --out")
    for path in out.rglob("*"):
        rel = path.relative_to(out)
        ours = (len(rel.parts) == 1 and path.is_dir() and rel.name in _DIGIT_NAMES) or (
            len(rel.parts) == 2 and path.suffix == ".png" and path.is_file()
        )
        if not ours:
            raise EdgetuneError(
                f"{out}: holds {rel}, which is not a demo digit; choose an empty or new --out"
            )


_DIGIT_NAMES = frozenset(str(d) for d in range(10))
