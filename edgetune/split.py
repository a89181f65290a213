"""The split model: a frozen int8 feature extractor in LiteRT and a small float32 head in NumPy.

Convert writes both beside the full int8 file; a bundle ships them signed; the agent
computes embeddings with the extractor and trains or serves the head with NumPy alone (no
TensorFlow on the device). ``head.npz`` holds ``kernel`` float32 [D, C] and ``bias``
float32 [C], and its int8 form for serving: ``kernel_int8`` int8 [D, C] with one float32
``kernel_scale`` per class (symmetric, zero point 0), as LiteRT quantizes Dense kernels.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgetune import litert
from edgetune.errors import EdgetuneError

EXTRACTOR_FILE = "extractor.tflite"
HEAD_FILE = "head.npz"
PERSONAL_HEAD_MODES = ("keep", "reset")


class HeadError(EdgetuneError):
    """A head weight file or update that cannot be used: the message says which array and why."""


@dataclass(frozen=True)
class Head:
    """A softmax-regression head: `softmax(embeddings @ kernel + bias)`.

    Attributes:
        kernel: float32 [D, C].
        bias: float32 [C].
    """

    kernel: np.ndarray
    bias: np.ndarray

    def __post_init__(self) -> None:
        check_head(self.kernel, self.bias)

    @property
    def shape(self) -> tuple[int, int]:
        """(embedding size D, classes C)."""
        return int(self.kernel.shape[0]), int(self.kernel.shape[1])

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        """Class logits [N, C] for embeddings [N, D]."""
        return embeddings.astype(np.float32) @ self.kernel + self.bias

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """Softmax class probabilities [N, C] for embeddings [N, D]."""
        return softmax(self.logits(embeddings))

    def predict(self, embeddings: np.ndarray) -> np.ndarray:
        """The class index of each embedding."""
        return np.argmax(self.logits(embeddings), axis=-1)

    def to_bytes(self) -> bytes:
        """head.npz's bytes: the float32 weights and their per-class int8 form."""
        q, scale = quantize_kernel(self.kernel)
        buffer = io.BytesIO()
        np.savez(buffer, kernel=self.kernel, bias=self.bias, kernel_int8=q, kernel_scale=scale)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, source: str = HEAD_FILE) -> Head:
        """Reads head.npz (float32 kernel and bias; no pickles).

        Raises:
            HeadError: unreadable, an array missing, or shapes or values that do not fit.
        """
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                kernel, bias = npz["kernel"], npz["bias"]
        except (OSError, ValueError, KeyError, EOFError) as e:
            raise HeadError(f"{source}: cannot read the head weights ({e})") from None
        try:
            return cls(kernel, bias)
        except HeadError as e:
            raise HeadError(f"{source}: {e}") from None


def check_head(kernel: Any, bias: Any) -> None:
    """Refuses a head that is not float32 kernel [D, C] and bias [C], all finite.

    Raises:
        HeadError: the first problem, naming the array.
    """
    for name, array, ndim in (("kernel", kernel, 2), ("bias", bias, 1)):
        if not isinstance(array, np.ndarray) or array.dtype != np.float32 or array.ndim != ndim:
            got = f"{getattr(array, 'dtype', type(array).__name__)}{list(np.shape(array))}"
            raise HeadError(f"head {name} is {got}; expected float32 with {ndim} dimensions")
        if not np.all(np.isfinite(array)):
            raise HeadError(f"head {name} holds NaN or inf")
    if kernel.shape[1] != bias.shape[0] or kernel.shape[1] < 2:
        raise HeadError(
            f"head kernel {list(kernel.shape)} and bias {list(bias.shape)} do not fit; "
            "expected kernel [D, C] and bias [C] with C >= 2"
        )


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def quantize_kernel(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-class int8 kernel and its float32 scales (zero point 0)."""
    scale = np.abs(kernel).max(axis=0) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    return np.clip(np.round(kernel / scale), -127, 127).astype(np.int8), scale


def embeddings(interpreter: Any, x: np.ndarray) -> np.ndarray:
    """The extractor's float32 embeddings [N, D] of model-ready inputs (dequantized)."""
    if len(x) == 0:
        out = interpreter.get_output_details()[0]
        return np.zeros((0, int(np.prod(out["shape"][1:]))), np.float32)
    return litert.predict(interpreter, x).reshape(len(x), -1).astype(np.float32)
