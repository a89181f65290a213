"""Every candidate measured on the file that would ship.

LiteRT accuracy; where the device runs TFLite Micro, its accuracy and argmax agreement with
LiteRT there and whether it supports every op; the measured arena; flash and gzip bytes;
LiteRT latency on one thread, the candidates' repeats interleaved so that a busy machine
slows them alike; and an energy estimate: the device latency (MACs of the file over the
profile's MACs per ms) times the profile's active power.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetune import files, litert
from edgetune.components.search.micro import ops_used, run_micro
from edgetune.config import DeviceProfile
from edgetune.preprocessing import quantize_input


@dataclass(frozen=True)
class Measured:
    """One candidate file's figures (`None`: not measured for this device, see `problems`)."""

    flash_bytes: int
    gzip_bytes: int
    accuracy: float
    arena_bytes: int
    arena_source: str
    macs: int
    ops: list[str]
    latency_ms: float
    device_latency_ms_estimate: float
    energy_uj_estimate: float | None
    tflm_accuracy: float | None = None
    tflm_agreement: float | None = None
    tflm_supported: bool | None = None
    problems: tuple[str, ...] = ()
    int8_problem: str = ""  # why the file is not full-integer int8, as the gate requires
    sha256: str = ""  # of the file measured: convert reuses the arena measured here

    def to_dict(self) -> dict[str, Any]:
        """The figures as plain JSON values."""
        return {**asdict(self), "problems": list(self.problems)}


def measure(
    path: str | os.PathLike,
    x_test: np.ndarray,
    y_test: np.ndarray,
    profile: DeviceProfile,
    latency_ms: float,
) -> Measured:
    """Measures the .tflite at `path` on the model-ready test split for `profile`.

    Args:
        path: the candidate's shipped file.
        x_test: model-ready float inputs.
        y_test: their class indices.
        profile: the target device (its runtime decides whether TFLite Micro runs).
        latency_ms: this file's LiteRT latency, from `interleaved_latency_ms`.
    """
    from concurrent.futures import ThreadPoolExecutor

    from edgetune.components.convert.arena import full_integer_problem, measure_arena

    path = Path(path)
    data = path.read_bytes()
    # The arena is measured in a child process: it runs while this one scores the file.
    with ThreadPoolExecutor(max_workers=1) as pool:
        arena = pool.submit(measure_arena, path)
        interpreter = litert.load(str(path))
        litert_scores = litert.predict(interpreter, x_test)
        litert_classes = np.argmax(litert_scores, axis=-1)
        macs = count_macs(interpreter)
        micro: dict[str, Any] = {}
        if profile.runtime == "tflite-micro":
            micro = _micro_figures(path, interpreter, x_test, y_test, litert_classes)
        arena_bytes, arena_source = arena.result()
    device_ms = macs / profile.macs_per_ms
    return Measured(
        flash_bytes=len(data),
        gzip_bytes=files.gzip_size(data),
        accuracy=float(np.mean(litert_classes == y_test)) if len(y_test) else 0.0,
        arena_bytes=int(arena_bytes),
        arena_source=arena_source,
        macs=macs,
        ops=ops_used(data),
        latency_ms=latency_ms,
        device_latency_ms_estimate=device_ms,
        energy_uj_estimate=device_ms * profile.active_power_mw if profile.active_power_mw else None,
        int8_problem=full_integer_problem(path),
        sha256=hashlib.sha256(data).hexdigest(),
        **micro,
    )


def _micro_figures(
    path: Path, interpreter: Any, x: np.ndarray, y: np.ndarray, litert_classes: np.ndarray
) -> dict[str, Any]:
    inp = interpreter.get_input_details()[0]
    if np.issubdtype(inp["dtype"], np.integer):
        scale, zero_point = inp["quantization"]
        x = quantize_input(x, scale, zero_point, inp["dtype"])
    run = run_micro(path, np.asarray(x, dtype=inp["dtype"]))
    if run.outputs is None:
        return {"tflm_supported": False, "problems": (run.problem,)}
    classes = np.argmax(run.outputs.reshape(len(x), -1), axis=-1)
    return {
        "tflm_supported": True,
        "tflm_accuracy": float(np.mean(classes == y)) if len(y) else 0.0,
        "tflm_agreement": float(np.mean(classes == litert_classes)) if len(y) else 1.0,
    }


def count_macs(interpreter: Any) -> int:
    """Multiply-accumulates of one inference, from the file's conv, depthwise and dense ops."""
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    total = 0
    for op in interpreter._get_ops_details():  # the public API lists tensors, not ops
        if op["op_name"] not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        out = int(np.prod(tensors[op["outputs"][0]]["shape"]))
        kernel = tensors[op["inputs"][1]][
            "shape"
        ]  # conv [O,H,W,I], depthwise [1,H,W,O], dense [O,I]
        if op["op_name"] == "CONV_2D":
            per_output = kernel[1] * kernel[2] * kernel[3]
        elif op["op_name"] == "DEPTHWISE_CONV_2D":
            per_output = kernel[1] * kernel[2]
        else:
            per_output = kernel[-1]
        total += out * int(per_output)
    return total


def interleaved_latency_ms(
    paths: Sequence[str | os.PathLike], x: np.ndarray, repeats: int = 5, runs: int = 50
) -> list[float]:
    """Median LiteRT latency (1 thread) of each file, one block of `runs` per file per repeat.

    The files take turns within every repeat, so load from other work on the machine falls
    on all of them alike instead of on whichever ran during the busy second.
    """
    interpreters = [litert.load(str(p), num_threads=1) for p in paths]
    for interpreter in interpreters:
        litert.run_one(interpreter, x[:1])  # sets the input and warms up
    blocks: list[list[float]] = [[] for _ in interpreters]
    for _ in range(repeats):
        for i, interpreter in enumerate(interpreters):
            start = time.perf_counter()
            for _ in range(runs):
                interpreter.invoke()
            blocks[i].append((time.perf_counter() - start) * 1000.0 / runs)
    return [statistics.median(b) for b in blocks]
