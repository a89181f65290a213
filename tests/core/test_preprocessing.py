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
        (encoded(Image.new("L", (16, 16)), "ICO"), "format ICO"),
    ],
    ids=["empty", "garbage", "truncated", "ico"],
)
def test_decode_image_refuses_bad_bytes_naming_the_source_and_cause(data, why):
    with pytest.raises(ImageDecodeError, match=f"^photos/x.png: .*{why}"):
        decode_image(data, "photos/x.png")


def test_a_file_above_the_pixel_limit_is_refused_from_its_header_before_decoding():
    big = encoded(Image.new("L", (100, 50)))
    truncated = big[: len(big) // 2]  # its pixels could not be decoded at all

    with pytest.raises(ImageDecodeError, match="100x50 = 5000 pixels, above max_pixels=4999") as e:
        decode_image(truncated, "big.png", max_pixels=4999)

    assert e.value.kind == "too many pixels"
    assert decode_image(big, max_pixels=5000).size == (100, 50)


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


RGB_SPEC = PreprocessSpec(
    height=2, width=2, channels=3, scale=1 / 255, offset=0.0, labels=("a", "b")
)


def pixels_of(image: Image.Image, fmt: str, spec: PreprocessSpec = RGB_SPEC, **save) -> np.ndarray:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return image_bytes_to_pixels(buffer.getvalue(), spec)


def filled(mode: str, value) -> Image.Image:
    return Image.new(mode, (2, 2), value)


@pytest.mark.parametrize(
    ("image", "fmt", "rgb"),
    [
        (filled("1", 1), "PNG", (255, 255, 255)),
        (filled("L", 100), "PNG", (100, 100, 100)),
        (filled("LA", (200, 255)), "PNG", (200, 200, 200)),
        (filled("LA", (200, 0)), "PNG", (0, 0, 0)),  # transparent: the black background
        (filled("RGB", (10, 20, 30)), "PNG", (10, 20, 30)),
        (filled("RGBA", (10, 20, 30, 255)), "PNG", (10, 20, 30)),
        (filled("RGB", (10, 20, 30)), "BMP", (10, 20, 30)),
        (filled("RGB", (10, 20, 30)), "WEBP", None),  # lossy: compared approximately below
        (filled("CMYK", (0, 0, 0, 0)), "JPEG", (255, 255, 255)),  # white ink-free paper
        (filled("CMYK", (0, 0, 0, 255)), "TIFF", (0, 0, 0)),
        (filled("CMYK", (255, 0, 0, 0)), "TIFF", (0, 255, 255)),  # cyan
        (filled("YCbCr", (255, 128, 128)), "TIFF", (255, 255, 255)),
        (filled("I;16", 65535), "PNG", (255, 255, 255)),
        (filled("I;16", 32768), "PNG", (128, 128, 128)),
        (filled("I;16B", 65535), "TIFF", (255, 255, 255)),
        (filled("I", 65535), "TIFF", (255, 255, 255)),
        (filled("F", 0.5), "TIFF", (128, 128, 128)),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_every_mode_decodes_to_the_model_channels(image, fmt, rgb):
    colour = pixels_of(image, fmt)
    grey = pixels_of(image, fmt, SPEC)

    assert colour.shape == (2, 2, 3) and colour.dtype == np.uint8
    assert grey.shape == (4, 6, 1)
    want = (10, 20, 30) if rgb is None else rgb
    tolerance = 3 if fmt in ("JPEG", "WEBP") or image.mode == "YCbCr" else 0
    assert np.abs(colour.astype(int) - want).max() <= tolerance, colour[0, 0]
    luma = round(0.299 * want[0] + 0.587 * want[1] + 0.114 * want[2])
    assert abs(int(grey[0, 0, 0]) - luma) <= tolerance + 1


def test_wide_integer_and_float_images_are_scaled_by_their_range_not_clipped():
    wide = Image.fromarray(np.array([[0, 600_000], [1_000_000, 1_000_000]], np.int32))
    floats = Image.fromarray(np.array([[-1.0, 2.0], [3.0, 3.0]], np.float32))
    sixteen = Image.fromarray(np.array([[0, 257], [65535, 65535]], np.uint16))

    assert pixels_of(wide, "TIFF")[..., 0].tolist() == [[0, 153], [255, 255]]
    assert pixels_of(floats, "TIFF")[..., 0].tolist() == [[0, 191], [255, 255]]
    assert pixels_of(sixteen, "PNG")[..., 0].tolist() == [[0, 1], [255, 255]]


def test_a_palette_image_keeps_its_transparent_index_as_black():
    palette = Image.new("P", (2, 2), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255])
    palette.putpixel((0, 0), 2)

    pixels = pixels_of(palette, "PNG", transparency=1)

    assert pixels[0, 0].tolist() == [0, 0, 255] and pixels[1, 1].tolist() == [0, 0, 0]


def test_exif_orientation_is_applied():
    image = Image.new("L", (4, 2), 0)
    image.putpixel((0, 0), 255)  # top-left, before rotation
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", exif=exif)

    decoded = decode_image(buffer.getvalue())

    assert decoded.size == (2, 4)
    assert np.asarray(decoded.image)[0, 1] == 255  # top-left moved to top-right


def test_an_animated_image_gives_its_first_frame():
    frames = [filled("RGB", (255, 0, 0)), filled("RGB", (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])

    pixels = image_bytes_to_pixels(buffer.getvalue(), RGB_SPEC)

    assert pixels[0, 0].tolist() == [255, 0, 0]
