"""The preprocessing spec: how raw image bytes become model input, on the trainer and on the device.

This module needs only NumPy and Pillow, so the device agent runs the very same code the
training data went through; training and serving cannot drift apart.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgetune.errors import EdgetuneError

ACCEPTED_FORMATS = ("PNG", "JPEG", "BMP")
# Modes Pillow can turn into grey or RGB without guessing at the meaning of the values.
ACCEPTED_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA")
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}


class ImageDecodeError(EdgetuneError):
    """The bytes are not an image edgetune accepts; the message says why."""


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
        d = asdict(self)
        d["labels"] = list(self.labels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessSpec:
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


def decode_image(data: bytes, source: str = "<bytes>") -> Image.Image:
    """Decodes and fully loads an image, or raises ImageDecodeError naming `source` and the cause."""
    if not data:
        raise ImageDecodeError(f"{source}: empty file (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
        fmt = image.format
        image.load()  # decodes every pixel: a truncated file fails here, not later
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{source}: not an image Pillow can identify") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageDecodeError(f"{source}: cannot decode ({e})") from None
    if fmt not in ACCEPTED_FORMATS:
        raise ImageDecodeError(f"{source}: format {fmt}; accepted: {', '.join(ACCEPTED_FORMATS)}")
    if image.mode not in ACCEPTED_MODES:
        raise ImageDecodeError(
            f"{source}: unsupported mode {image.mode}; accepted: {', '.join(ACCEPTED_MODES)}"
        )
    return image


def to_pixels(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """Converts to the spec's channels and size; returns uint8 of shape (height, width, channels)."""
    mode = "L" if spec.channels == 1 else "RGB"
    if image.mode in ("RGBA", "LA", "PA", "P"):
        # Transparent pixels become black, the background both digit corpora use.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    image = image.convert(mode)
    if image.size != (spec.width, spec.height):
        image = image.resize((spec.width, spec.height), _RESAMPLE[spec.resample])
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels.reshape(spec.height, spec.width, spec.channels)


def image_bytes_to_pixels(data: bytes, spec: PreprocessSpec, source: str = "<bytes>") -> np.ndarray:
    return to_pixels(decode_image(data, source), spec)


def normalize(pixels: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 pixels (..., H, W, C) to the model's float32 input."""
    return pixels.astype(np.float32) * np.float32(spec.scale) + np.float32(spec.offset)


def quantize_input(x: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    """Float model input to an integer input tensor, as LiteRT's int8/uint8 inputs expect."""
    info = np.iinfo(dtype)
    q = np.round(x / np.float32(scale)) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize_output(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (q.astype(np.float32) - zero_point) * np.float32(scale)
