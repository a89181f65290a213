"""Running a .tflite file in LiteRT: quantize the input, invoke, dequantize the output.

No TensorFlow here: the device agent runs models through these same functions.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from edgetune.preprocessing import dequantize_output, quantize_input


def run_one(interpreter: Any, x: np.ndarray) -> np.ndarray:
    """Scores for one model-ready float input of shape (1, H, W, C) or (H, W, C)."""
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    x = x.reshape(inp["shape"])
    if np.issubdtype(inp["dtype"], np.integer):
        scale, zero_point = inp["quantization"]
        x = quantize_input(x, scale, zero_point, inp["dtype"])
    interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
    interpreter.invoke()
    y = interpreter.get_tensor(out["index"])[0]
    if np.issubdtype(out["dtype"], np.integer):
        scale, zero_point = out["quantization"]
        y = dequantize_output(y, scale, zero_point)
    return y


def predict(interpreter: Any, xs: np.ndarray) -> np.ndarray:
    """Scores for a batch of model-ready float inputs, one invoke each."""
    return np.stack([run_one(interpreter, x) for x in xs]) if len(xs) else np.zeros((0,))


def median_latency_ms(interpreter: Any, x: np.ndarray, runs: int = 200, warmup: int = 20) -> float:
    """Median wall time of one invoke (input already set), after a warm-up."""
    run_one(interpreter, x)
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def load(model_path: str, num_threads: int = 1) -> Any:
    """A LiteRT interpreter for `model_path`, its tensors allocated, ready to invoke."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=model_path, num_threads=num_threads)
    interpreter.allocate_tensors()
    return interpreter
