"""The preprocessing spec and the pixel path the trainer and the device share."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from edgetune.errors import EdgetuneError
from edgetune.preprocessing import (
    ImageDecodeError,
    PreprocessSpec,
    decode_image,
    dequantize_output,
    image_bytes_to_pixels,
    normalize,
    quantize_input,
    to_pixels,
)

SPEC = PreprocessSpec(height=4, width=6, channels=1, scale=1 / 255, offset=0.0, labels=("a", "b"))


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


NOISE_PNG = encoded(
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8))
)


def test_spec_round_trips_through_a_dict_and_json_types():
    spec = PreprocessSpec(8, 8, 3, 2 / 255, -1.0, ("cat", "dog", "cow"), resample="nearest")
    d = spec.to_dict()
    assert d["labels"] == ["cat", "dog", "cow"]  # a list: what JSON gives back
    assert PreprocessSpec.from_dict(d) == spec
    # Numbers written as strings or ints by hand are read as the right types.
    d.update(height="8", scale=1, offset=0)
    assert PreprocessSpec.from_dict(d).height == 8 and PreprocessSpec.from_dict(d).scale == 1.0


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"channels": 2}, "channels=2"),
        ({"height": 0}, "size 0x6"),
        ({"resample": "bicubic"}, "'bicubic'"),
        ({"labels": ("only",)}, "['only']"),
    ],
)
def test_spec_rejects_bad_values_naming_them(change, named):
    fields = {**SPEC.__dict__, **change}
    with pytest.raises(EdgetuneError, match=named.replace("[", r"\[").replace("]", r"\]")):
        PreprocessSpec(**fields)


def test_spec_from_dict_names_a_missing_field():
    d = SPEC.to_dict()
    del d["scale"]
    with pytest.raises(EdgetuneError, match="'scale'"):
        PreprocessSpec.from_dict(d)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty file"),
        (b"not an image at all", "not an image"),
        (NOISE_PNG[: len(NOISE_PNG) // 2], "cannot decode"),
        (encoded(Image.new("L", (8, 8)), "GIF"), "format GIF"),
        (encoded(Image.new("I;16", (8, 8))), "unsupported mode"),  # 16-bit grey PNG
    ],
    ids=["empty", "garbage", "truncated", "gif", "16-bit"],
)
def test_decode_image_refuses_bad_bytes_naming_the_source_and_cause(data, why):
    with pytest.raises(ImageDecodeError, match=f"^photos/x.png: .*{why}"):
        decode_image(data, "photos/x.png")


def test_to_pixels_converts_resizes_and_shapes_as_the_spec_says():
    rgb = Image.new("RGB", (12, 8), (255, 0, 0))

    grey = to_pixels(rgb, SPEC)
    colour = to_pixels(rgb, PreprocessSpec(4, 6, 3, 1.0, 0.0, ("a", "b")))

    assert grey.shape == (4, 6, 1) and grey.dtype == np.uint8
    assert np.all(grey == 76)  # ITU-R 601 luma of pure red: 0.299 * 255
    assert colour.shape == (4, 6, 3) and np.all(colour[..., 0] == 255) and not colour[..., 1:].any()


def test_transparent_pixels_become_black_background():
    rgba = Image.new("RGBA", (6, 4), (255, 255, 255, 0))
    rgba.putpixel((0, 0), (255, 255, 255, 255))

    pixels = image_bytes_to_pixels(encoded(rgba), SPEC)

    assert pixels[0, 0, 0] == 255 and pixels.sum() == 255


def test_nearest_resampling_keeps_values_bilinear_blends_them():
    image = Image.fromarray(np.tile(np.array([[0, 255]], np.uint8), (2, 1)))  # 2x2, two columns
    nearest = to_pixels(image, PreprocessSpec(4, 4, 1, 1.0, 0.0, ("a", "b"), resample="nearest"))
    bilinear = to_pixels(image, PreprocessSpec(4, 4, 1, 1.0, 0.0, ("a", "b")))

    assert set(np.unique(nearest)) == {0, 255}
    assert len(set(np.unique(bilinear)) - {0, 255}) > 0


def test_normalize_applies_scale_and_offset_in_float32():
    spec = PreprocessSpec(1, 2, 1, 2 / 255, -1.0, ("a", "b"))
    x = normalize(np.array([[[[0], [255]]]], np.uint8), spec)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x.ravel(), [-1.0, 1.0], atol=1e-6)


def test_quantize_input_rounds_offsets_and_clips_to_the_integer_range():
    x = np.array([-2.0, -0.26, 0.0, 0.26, 2.0], np.float32)

    q = quantize_input(x, scale=0.01, zero_point=-128, dtype=np.int8)
    u = quantize_input(x, scale=0.01, zero_point=0, dtype=np.uint8)

    assert q.dtype == np.int8 and q.tolist() == [-128, -128, -128, -102, 72]
    assert u.dtype == np.uint8 and u.tolist() == [0, 0, 0, 26, 200]
    np.testing.assert_allclose(dequantize_output(q, 0.01, -128), [0, 0, 0, 0.26, 2.0], atol=1e-6)
