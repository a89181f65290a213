"""The shipped file as a microcontroller runs it: TFLite Micro's interpreter, and its op set.

tflite-micro's Python interpreter aborts the whole process on some graphs (see
`components/convert/arena.py`), so it runs in a child process: the parent hands it the
file and the already-quantized inputs and reads the raw outputs back. Whether TFLite Micro
supports every op of the file is what allocating the interpreter says (its op resolver
registers every kernel TFLite Micro has); the ops are read from the flatbuffer itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TFLM_TIMEOUT_S = 300
_CHILD = """
import sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
path, inputs, outputs, arena = sys.argv[1:5]
interpreter = runtime.Interpreter.from_file(path, arena_size=int(arena))
with np.load(inputs) as f:
    x = f["x"]
scores = []
for sample in x:
    interpreter.set_input(sample[None], 0)
    interpreter.invoke()
    scores.append(np.array(interpreter.get_output(0))[0])
np.save(outputs, np.stack(scores))
"""


@dataclass(frozen=True)
class MicroRun:
    """What TFLite Micro made of a file: raw outputs, or the reason it could not run it."""

    outputs: np.ndarray | None
    problem: str


def ops_used(model: bytes) -> list[str]:
    """The distinct operators of a .tflite flatbuffer, by builtin name (custom ops by code)."""
    from tflite_micro.python.tflite_micro import runtime
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    parsed = runtime.convert_bytearray_to_object(bytearray(model))
    codes = parsed.operatorCodes or []
    used = set()
    for subgraph in parsed.subgraphs or []:
        for op in subgraph.operators or []:
            code = codes[op.opcodeIndex]
            builtin = runtime.get_builtin_code_from_operator_code(code)
            if builtin == schema.BuiltinOperator.CUSTOM:
                used.add(f"CUSTOM:{(code.customCode or b'').decode(errors='replace')}")
            else:
                used.add(names.get(builtin, str(builtin)))
    return sorted(used)


def run_micro(path: str | os.PathLike, inputs: np.ndarray) -> MicroRun:
    """Runs each input (already in the file's input dtype, shape (N, ...)) in TFLite Micro.

    Returns:
        The raw output tensors (N, classes) in the file's output dtype, or None with the
        last line TFLite Micro printed (an unsupported op is named there) as the problem.
    """
    path = Path(path)
    room = max(1 << 22, 20 * path.stat().st_size)  # measured elsewhere; here only room to run
    with tempfile.TemporaryDirectory(prefix="tflm-") as tmp:
        np.savez(Path(tmp) / "x.npz", x=inputs)
        out = Path(tmp) / "y.npy"
        try:
            done = subprocess.run(
                [sys.executable, "-c", _CHILD, str(path), f"{tmp}/x.npz", str(out), str(room)],
                capture_output=True,
                text=True,
                timeout=TFLM_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return MicroRun(None, f"TFLite Micro took over {TFLM_TIMEOUT_S} s")
        if done.returncode != 0 or not out.exists():
            return MicroRun(None, _last_line(done.stderr + done.stdout, done.returncode))
        return MicroRun(np.load(out), "")


def _last_line(text: str, returncode: int) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    useful = [line for line in lines if "op" in line.lower() or "error" in line.lower()]
    last = (useful or lines or ["no output"])[-1]
    return f"TFLite Micro failed (exit {returncode}): {last[:300]}"
