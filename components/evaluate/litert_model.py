"""The int8 .tflite file as an MLflow pyfunc model: LiteRT plus the preprocessing it expects.

MLflow logs this file as the model's code ("models from code"), so a model loaded with
`mlflow.pyfunc.load_model("models:/edgetune-int8@champion")` needs mlflow, numpy, pandas
and ai-edge-litert, not edgetune. It therefore imports nothing from edgetune and repeats
the few lines of edgetune.litert it needs.

Input: uint8 pixels `(N, height, width, channels)` as the preprocessing spec sizes them (what
`edgetune.preprocessing.to_pixels` gives). Output: one row per image, the predicted `label`,
its `class_index` and `score` (the model's probability for it).
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd

TFLITE_ARTIFACT = "tflite"
SPEC_ARTIFACT = "preprocessing"


class LiteRTClassifier(mlflow.pyfunc.PythonModel):
    """Runs the .tflite file in LiteRT after the spec's `pixels * scale + offset`."""

    def load_context(self, context) -> None:
        """Opens the .tflite file in LiteRT and reads the preprocessing spec."""
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=context.artifacts[TFLITE_ARTIFACT])
        self.interpreter.allocate_tensors()
        with open(context.artifacts[SPEC_ARTIFACT]) as f:
            self.spec = json.load(f)

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        """Label, class index and score for each image of uint8 pixels (N, H, W, C)."""
        spec = self.spec
        shape = (spec["height"], spec["width"], spec["channels"])
        pixels = np.asarray(model_input)
        if pixels.ndim == 3 and spec["channels"] == 1:
            pixels = pixels[..., None]
        if pixels.shape[1:] != shape:
            raise ValueError(
                f"input shape {pixels.shape}; accepted: (N, {', '.join(map(str, shape))})"
            )
        x = pixels.astype(np.float32) * np.float32(spec["scale"]) + np.float32(spec["offset"])
        scores = np.stack([self._run_one(row) for row in x]) if len(x) else np.zeros((0, 1))
        best = scores.argmax(axis=-1) if len(x) else np.zeros((0,), dtype=int)
        return pd.DataFrame(
            {
                "label": [spec["labels"][i] for i in best],
                "class_index": best.astype(np.int64),
                "score": scores[np.arange(len(best)), best].astype(np.float64),
            }
        )

    def _run_one(self, x: np.ndarray) -> np.ndarray:
        inp = self.interpreter.get_input_details()[0]
        out = self.interpreter.get_output_details()[0]
        x = x.reshape(inp["shape"])
        if np.issubdtype(inp["dtype"], np.integer):
            scale, zero_point = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / np.float32(scale)) + zero_point, info.min, info.max)
        self.interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(out["index"])[0]
        if np.issubdtype(out["dtype"], np.integer):
            scale, zero_point = out["quantization"]
            y = (y.astype(np.float32) - zero_point) * np.float32(scale)
        return y


mlflow.models.set_model(LiteRTClassifier())
