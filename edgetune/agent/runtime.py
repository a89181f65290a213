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

from edgetune import litert, preprocessing
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
        """Class scores (dequantized, float32) for one uint8 image `(H, W, C)` from `to_pixels`."""
        x = preprocessing.normalize(pixels[np.newaxis], self.spec)
        with self._lock:
            return litert.run_one(self._interpreter, x)

    def predict(
        self, image_bytes: bytes, max_pixels: int = preprocessing.DEFAULT_MAX_PIXELS
    ) -> dict[str, Any]:
        """Decodes an encoded image and classifies it.

        Raises:
            ImageDecodeError: the bytes are not an accepted image (message says why).
        """
        pixels = preprocessing.image_bytes_to_pixels(
            image_bytes, self.spec, source="request body", max_pixels=max_pixels
        )
        scores = self.scores(pixels)
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
