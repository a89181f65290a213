"""The preprocessing spec: how raw image bytes become model input, on the trainer and on the device.

This module needs only NumPy and Pillow, so the device agent runs the very same code the
training data went through; training and serving cannot drift apart.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edgetune.errors import EdgetuneError

ACCEPTED_FORMATS = ("PNG", "JPEG", "MPO", "BMP", "GIF", "TIFF", "WEBP", "PPM")
# Above this many decoded pixels a file is refused before its pixels are decoded: 40 MP is
# more than any phone camera writes (a 4000x4000 photo is 16 MP) and costs ~160 MB as RGBA.
DEFAULT_MAX_PIXELS = 40_000_000
# Modes that carry 8-bit values Pillow converts without guessing at their meaning.
_EIGHT_BIT = {"1": "L", "L": "L", "LA": "LA", "La": "LA", "P": None, "PA": None}
_EIGHT_BIT |= {"RGB": "RGB", "RGBA": "RGBA", "RGBa": "RGBA", "RGBX": "RGB"}
_EIGHT_BIT |= {"CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}


class ImageDecodeError(EdgetuneError):
    """The bytes are not an image edgetune accepts; the message says why.

    `kind` names the reason in a word or two (`empty file`, `too many pixels`, ...), so a
    report can count files by reason.
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything needed to turn an image file into the model's float input.

    `model_input = resize(convert(image, channels), (height, width)) * scale + offset`
    """

    height: int
    width: int
    channels: int
    scale: float
    offset: float
    labels: tuple[str, ...]
    resample: str = "bilinear"

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise EdgetuneError(
                f"preprocessing channels={self.channels}; accepted: 1 (grey) or 3 (RGB)"
            )
        if self.height < 1 or self.width < 1:
            raise EdgetuneError(f"preprocessing size {self.height}x{self.width}; both must be >= 1")
        if self.resample not in _RESAMPLE:
            raise EdgetuneError(
                f"preprocessing resample={self.resample!r}; accepted: {sorted(_RESAMPLE)}"
            )
        if len(self.labels) < 2:
            raise EdgetuneError(
                f"preprocessing labels {list(self.labels)}; need at least 2 classes"
            )

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-ready dict (preprocessing.json)."""
        d = asdict(self)
        d["labels"] = list(self.labels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessSpec:
        """The spec read from a dict such as `to_dict` writes; a missing field raises, naming it."""
        try:
            return cls(
                height=int(d["height"]),
                width=int(d["width"]),
                channels=int(d["channels"]),
                scale=float(d["scale"]),
                offset=float(d["offset"]),
                labels=tuple(str(label) for label in d["labels"]),
                resample=str(d.get("resample", "bilinear")),
            )
        except KeyError as e:
            raise EdgetuneError(f"preprocessing spec lacks field {e.args[0]!r}") from None


@dataclass(frozen=True)
class DecodedImage:
    """An image decoded to 8 bits per channel (mode L, LA, RGB or RGBA), upright, frame 0.

    `format`, `mode` and `size` describe the file as written (size after EXIF rotation).
    """

    image: Image.Image
    format: str
    mode: str
    size: tuple[int, int]


def decode_image(
    data: bytes,
    source: str = "<bytes>",
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
) -> DecodedImage:
    """Decodes one encoded image, or raises ImageDecodeError naming `source` and the cause.

    Every mode Pillow reads is accepted and brought to 8 bits (see `to_eight_bit`); EXIF
    orientation is applied; an animated file gives its first frame.

    Args:
        data: the file's bytes.
        source: the name used in error messages.
        max_pixels: a file whose width x height exceeds this is refused from its header,
            before any pixel is decoded.
        draft_size: when set, a JPEG may be decoded at a reduced DCT scale whose sides stay
            >= this many pixels (much faster for large photos that will be shrunk anyway).
    """
    if not data:
        raise ImageDecodeError(f"{source}: empty file (0 bytes)", "empty file")
    image = _open(data, source)
    fmt, mode, (width, height) = image.format or "", image.mode, image.size
    if fmt not in ACCEPTED_FORMATS:
        accepted = ", ".join(ACCEPTED_FORMATS)
        raise ImageDecodeError(
            f"{source}: format {fmt}; accepted: {accepted}", "unsupported format"
        )
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"{source}: {width}x{height} = {width * height} pixels, above max_pixels={max_pixels}",
            "too many pixels",
        )
    if draft_size is not None and fmt in ("JPEG", "MPO"):
        image.draft(None, (draft_size, draft_size))
    try:
        image.seek(0)  # an animated GIF, WebP or TIFF: the first frame
        image.load()  # decodes every pixel: a truncated file fails here, not later
        upright = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageDecodeError(f"{source}: cannot decode ({e})", "cannot decode") from None
    return DecodedImage(to_eight_bit(upright, source), fmt, mode, upright.size)


def _open(data: bytes, source: str) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ImageDecodeError(f"{source}: {e}", "too many pixels") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(
            f"{source}: not an image Pillow can identify", "not an image"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageDecodeError(f"{source}: cannot decode ({e})", "cannot decode") from None


def to_eight_bit(image: Image.Image, source: str = "<image>") -> Image.Image:
    """Any Pillow mode as 8-bit L, LA, RGB or RGBA, keeping transparency as alpha.

    16-bit modes (I;16, I;16B, ...) are scaled from 0..65535; 32-bit integers (I) from
    0..65535 when every value fits (16-bit data stored wide), else from the image's own
    min..max; floats (F) from 0..1 when every value fits, else from min..max. Scaling, never
    clipping, keeps the picture a picture.
    """
    mode = image.mode
    if mode in ("L", "RGB") and "transparency" in image.info:
        return image.convert("RGBA")
    if mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if mode in ("P", "PA"):
        alpha = mode == "PA" or "transparency" in image.info
        return image.convert("RGBA" if alpha else "RGB")
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_scale_to_uint8(np.asarray(image), mode))
    target = _EIGHT_BIT.get(mode)
    try:
        if target is None:
            raise ValueError(mode)
        return image.convert(target)
    except ValueError:
        raise ImageDecodeError(
            f"{source}: mode {mode} has no conversion to grey or RGB", "unsupported mode"
        ) from None


def _scale_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    a = values.astype(np.float32)
    finite = a[np.isfinite(a)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if mode.startswith("I;16") or (mode == "I" and lo >= 0 and hi <= 65535):
        lo, hi = 0.0, 65535.0
    elif mode == "F" and lo >= 0 and hi <= 1:
        lo, hi = 0.0, 1.0
    span = hi - lo if hi > lo else 1.0
    scaled = np.nan_to_num((a - lo) * (255.0 / span), nan=0.0, posinf=255.0, neginf=0.0)
    return np.round(np.clip(scaled, 0, 255)).astype(np.uint8)


def to_pixels(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """Converts to the spec's channels and size; returns uint8 of shape (height, width, channels)."""
    mode = "L" if spec.channels == 1 else "RGB"
    image = to_eight_bit(image)
    if image.mode in ("RGBA", "LA"):
        # Transparent pixels become black, the background both digit corpora use.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    image = image.convert(mode)
    if image.size != (spec.width, spec.height):
        image = image.resize((spec.width, spec.height), _RESAMPLE[spec.resample])
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels.reshape(spec.height, spec.width, spec.channels)


def image_bytes_to_pixels(
    data: bytes,
    spec: PreprocessSpec,
    source: str = "<bytes>",
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Encoded bytes to the model's uint8 pixels: what preprocess and the device agent run.

    Raises:
        ImageDecodeError: the bytes are not an accepted image, or exceed `max_pixels`.
    """
    draft = max(spec.height, spec.width) * 2  # twice the target keeps bilinear's detail
    decoded = decode_image(data, source, max_pixels=max_pixels, draft_size=draft)
    return to_pixels(decoded.image, spec)


def normalize(pixels: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 pixels (..., H, W, C) to the model's float32 input."""
    return pixels.astype(np.float32) * np.float32(spec.scale) + np.float32(spec.offset)


def quantize_input(x: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    """Float model input to an integer input tensor, as LiteRT's int8/uint8 inputs expect."""
    info = np.iinfo(dtype)
    q = np.round(x / np.float32(scale)) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize_output(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Real values of a quantized output tensor: `(q - zero_point) * scale`, as float32."""
    return (q.astype(np.float32) - zero_point) * np.float32(scale)
