"""The demo digits: every scikit-learn digit as a PNG in its digit's folder, written once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from edgetune.demo_data import digit_pixels, write_demo_digits
from edgetune.errors import EdgetuneError


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "digits"
    assert write_demo_digits(out) == 1797
    return out


def test_writes_all_1797_digits_into_ten_folders(digits_dir):
    target = load_digits().target

    counts = {d.name: len(list(d.glob("*.png"))) for d in digits_dir.iterdir()}

    assert counts == {str(d): int(n) for d, n in enumerate(np.bincount(target))}
    assert sum(counts.values()) == 1797


def test_pixels_are_the_digit_values_scaled_to_8_bit_grey(digits_dir):
    digits = load_digits()
    for index in (0, 500, 1796):
        image = Image.open(digits_dir / str(digits.target[index]) / f"{index:04d}.png")
        assert image.mode == "L" and image.size == (8, 8)
        np.testing.assert_array_equal(np.asarray(image), digit_pixels(digits.images[index]))
    assert digit_pixels(np.array([0, 1, 8, 15, 16])).tolist() == [0, 16, 128, 239, 255]


def test_a_complete_set_is_left_alone_unless_forced(digits_dir):
    sample = digits_dir / "0" / "0000.png"
    before = sample.stat().st_mtime_ns

    assert write_demo_digits(digits_dir) == 0
    assert sample.stat().st_mtime_ns == before
    assert write_demo_digits(digits_dir, force=True) == 1797


def test_an_incomplete_set_is_rewritten(tmp_path):
    out = tmp_path / "digits"
    write_demo_digits(out)
    (out / "3" / "0003.png").unlink()

    assert write_demo_digits(out) == 1797
    assert (out / "3" / "0003.png").is_file()


def test_a_folder_holding_other_files_is_never_replaced(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")

    with pytest.raises(EdgetuneError, match=r"holds thesis.tex, which is not a demo digit"):
        write_demo_digits(tmp_path / "mine", force=True)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
