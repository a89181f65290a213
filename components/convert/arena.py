"""The RAM an int8 .tflite needs on the device: the TFLite Micro tensor arena, measured.

tflite-micro's Python interpreter records every arena allocation and prints the totals from
C++. It aborts the whole process on some graphs (a MobileNetV2 at 96x96 here), so it runs in
a child process. Where it cannot measure the file, the arena is planned from LiteRT's view
of the file: activation lifetimes packed greedily as TFLM does, plus TFLM's bookkeeping.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgetune import files

# What `device_fit` reports besides the file's sha256.
FIT_KEYS = ("full_integer_problem", "arena_bytes", "arena_source")
_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")
TFLM_TIMEOUT_S = 120
# The child: load the file with room to spare, print the allocation recorder's report.
_CHILD = (
    "import sys\n"
    "from tflite_micro.python.tflite_micro import runtime\n"
    "runtime.Interpreter.from_file(sys.argv[1], arena_size=int(sys.argv[2])).print_allocations()\n"
)


def measure_arena(path: str | os.PathLike) -> tuple[int, str]:
    """(arena bytes, how it was measured: "tflite-micro" or "litert-plan") for a .tflite."""
    path = Path(path)
    measured = _tflm_arena(path)
    if measured is not None:
        return measured, "tflite-micro"
    return _litert_arena(path), "litert-plan"


def device_fit(path: str | os.PathLike, earlier: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a device needs of the .tflite at `path`: why it is not full-integer, its arena.

    Args:
        path: the .tflite file.
        earlier: the same figures (`FIT_KEYS`) an earlier step measured, with the `sha256`
            of the file it measured. Reused when that is this file's sha256: measuring the
            arena starts TFLite Micro in a child process. Measured afresh otherwise.

    Returns:
        `sha256` and the `FIT_KEYS`: full_integer_problem ("" when full-integer),
        arena_bytes and arena_source (as `measure_arena`).
    """
    digest = files.sha256_file(path)
    if earlier and earlier.get("sha256") == digest and all(k in earlier for k in FIT_KEYS):
        return {"sha256": digest, **{k: earlier[k] for k in FIT_KEYS}}
    arena_bytes, arena_source = measure_arena(path)
    return {
        "sha256": digest,
        "full_integer_problem": full_integer_problem(path),
        "arena_bytes": arena_bytes,
        "arena_source": arena_source,
    }


def full_integer_problem(path: str | os.PathLike) -> str:
    """Why the .tflite is not full-integer (float tensors, float I/O), or "" when it is."""
    from edgetune import litert

    interpreter = litert.load(str(path))
    io = interpreter.get_input_details() + interpreter.get_output_details()
    float_io = [d["name"] for d in io if np.dtype(d["dtype"]) != np.int8]
    if float_io:
        return f"input/output {float_io[0]} is not int8; the device runs int8 only"
    floats = [
        t["name"] for t in interpreter.get_tensor_details() if np.dtype(t["dtype"]) == np.float32
    ]
    if floats:
        return (
            f"{len(floats)} float32 tensors remain (first: {floats[0]}); the device runs int8 only"
        )
    return ""


def _tflm_arena(path: Path) -> int | None:
    room = max(1 << 20, 20 * path.stat().st_size)
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path), str(room)],
            capture_output=True,
            text=True,
            timeout=TFLM_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    match = _TOTAL.search(done.stdout + done.stderr)
    return int(match.group(1)) if done.returncode == 0 and match else None


def _litert_arena(path: Path) -> int:
    from edgetune import litert
    from edgetune.zoo import costs

    interpreter = litert.load(str(path))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    producer: dict[int, int] = {}
    planned: list[tuple[int, list[int]]] = []
    for detail in interpreter.get_input_details():
        producer[detail["index"]] = len(planned)
        planned.append((int(np.prod(detail["shape"])), []))
    ops = [op for op in interpreter._get_ops_details() if op["op_name"] != "DELEGATE"]
    for op in ops:
        inputs = [producer[i] for i in op["inputs"] if i in producer]
        size = sum(int(np.prod(tensors[o]["shape"])) for o in op["outputs"])
        planned.append((size, inputs))
        for o in op["outputs"]:
            producer[o] = len(planned) - 1
    channels = sum(
        len(t["quantization_parameters"]["scales"])
        for t in tensors.values()
        if len(t["quantization_parameters"]["scales"]) > 1 and t["dtype"] == np.int8
    )
    return (
        costs.plan_activations(planned)
        + channels * costs.PER_CHANNEL_BYTES
        + len(tensors) * costs.EVAL_TENSOR_BYTES
        + len(ops) * costs.NODE_BYTES
        + costs.FIXED_BYTES
    )
