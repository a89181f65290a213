"""One installed model in LiteRT: the device-side preprocessing, inference and smoke test.

Only NumPy, Pillow (through the shared preprocessing module) and ai-edge-litert are used
here: the agent runs on devices where TensorFlow is neither installed nor affordable.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from edgetune import litert, preprocessing, split
from edgetune.bundle import VerifiedBundle
from edgetune.errors import EdgetuneError


class ModelLoadError(EdgetuneError):
    """The model in a bundle cannot be served; the message says why."""


@dataclass(frozen=True)
class SmokeResult:
    """How many of the bundle's samples the device classified as the build machine did."""

    agreement: float
    n: int
    min_agreement: float

    @property
    def passed(self) -> bool:
        """Whether the agreement reached the bundle's threshold."""
        return self.agreement >= self.min_agreement

    def to_dict(self) -> dict[str, Any]:
        """The result as reported by /health."""
        return {"agreement": self.agreement, "n": self.n, "min_agreement": self.min_agreement}


class LoadedModel:
    """A bundle's model in its own LiteRT interpreter.

    A LiteRT Interpreter is not thread-safe (`set_tensor`, `invoke` and `get_tensor` share
    buffers), so each call holds this model's lock. One thread per interpreter keeps the
    device's other work responsive and the latency predictable.
    """

    def __init__(self, bundle: VerifiedBundle) -> None:
        """Loads the bundle's model and checks it fits the bundle's preprocessing spec.

        Raises:
            ModelLoadError: LiteRT refuses the model, or its tensors do not match the spec.
        """
        self.version = bundle.version
        self.spec = bundle.manifest.spec
        self.model_sha256 = bundle.model_sha256
        self._lock = threading.Lock()
        try:
            self._interpreter = Interpreter(model_content=bundle.model_bytes, num_threads=1)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelLoadError(
                f"LiteRT cannot load model.tflite of {self.version}: {e}"
            ) from None
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._check_signature()
        self.split = _SplitRuntime.of(bundle) if bundle.manifest.split else None

    def _check_signature(self) -> None:
        spec = self.spec
        want_in = [1, spec.height, spec.width, spec.channels]
        if list(self._input["shape"]) != want_in:
            raise ModelLoadError(
                f"model input shape {list(self._input['shape'])} does not match the spec {want_in}"
            )
        classes = int(np.prod(self._output["shape"]))
        if classes != len(spec.labels):
            raise ModelLoadError(f"model has {classes} outputs for {len(spec.labels)} labels")

    def scores(self, pixels: np.ndarray) -> np.ndarray:
        """Class scores (dequantized, float32) for one uint8 image `(H, W, C)` from `to_pixels`.

        A bundle that serves its split model answers with its extractor and head.
        """
        if self.split is not None and self.split.serve == "split":
            return self.split.base_head.probabilities(self.embed(pixels[np.newaxis]))[0]
        x = preprocessing.normalize(pixels[np.newaxis], self.spec)
        with self._lock:
            return litert.run_one(self._interpreter, x)

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """Embeddings [N, D] of uint8 images [N, H, W, C] by the bundle's int8 extractor.

        Raises:
            ModelLoadError: the bundle has no split model.
        """
        if self.split is None:
            raise ModelLoadError(f"bundle {self.version} has no split model to personalize")
        x = preprocessing.normalize(pixels, self.spec)
        with self.split.lock:
            return split.embeddings(self.split.interpreter, x)

    def pixels(self, image_bytes: bytes, max_pixels: int) -> np.ndarray:
        """An encoded image as the model's uint8 pixels (H, W, C).

        Raises:
            ImageDecodeError: the bytes are not an accepted image (message says why).
        """
        return preprocessing.image_bytes_to_pixels(
            image_bytes, self.spec, source="request body", max_pixels=max_pixels
        )

    def predict(
        self,
        image_bytes: bytes,
        max_pixels: int = preprocessing.DEFAULT_MAX_PIXELS,
        head: split.Head | None = None,
    ) -> dict[str, Any]:
        """Decodes an encoded image and classifies it (with `head` on the extractor, if given).

        Raises:
            ImageDecodeError: the bytes are not an accepted image (message says why).
        """
        pixels = self.pixels(image_bytes, max_pixels)
        if head is None:
            scores = self.scores(pixels)
        else:
            scores = head.probabilities(self.embed(pixels[np.newaxis]))[0]
        index = int(np.argmax(scores))
        return {
            "label": self.spec.labels[index],
            "index": index,
            "scores": [float(s) for s in scores],
            "version": self.version,
        }

    def smoke_test(self, bundle: VerifiedBundle) -> SmokeResult:
        """Runs the bundle's samples and compares the classes with those the build machine got."""
        pixels, expected = bundle.samples()
        got = np.array([int(np.argmax(self.scores(p))) for p in pixels])
        agreement = float(np.mean(got == expected)) if len(expected) else 0.0
        return SmokeResult(agreement, len(expected), bundle.manifest.smoke_min_agreement)


@dataclass(frozen=True)
class _SplitRuntime:
    """The bundle's int8 extractor in its own interpreter, and its base head."""

    interpreter: Interpreter
    extractor_sha256: str
    base_head: split.Head
    base_head_sha256: str
    serve: str
    lock: threading.Lock

    @classmethod
    def of(cls, bundle: VerifiedBundle) -> _SplitRuntime:
        entry = bundle.manifest.split
        try:
            head = split.Head.from_bytes(bundle.files[entry.head], entry.head)
            interpreter = Interpreter(model_content=bundle.files[entry.extractor], num_threads=1)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:  # HeadError is a ValueError
            raise ModelLoadError(f"split model of {bundle.version}: {e}") from None
        out = interpreter.get_output_details()[0]
        if int(np.prod(out["shape"][1:])) != head.shape[0]:
            raise ModelLoadError(
                f"{entry.extractor} gives {list(out['shape'])}; {entry.head} takes {head.shape[0]}"
            )
        listed = bundle.manifest.files
        return cls(interpreter, listed[entry.extractor].sha256, head, listed[entry.head].sha256,
                   entry.serve, threading.Lock())  # fmt: skip
