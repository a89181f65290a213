"""The firmware C array compiles with the system compilers and holds exactly the .tflite bytes."""

import shutil
import subprocess
from pathlib import Path

import pytest
from support.agents import SPEC

from edgetune import firmware
from edgetune.errors import EdgetuneError
from edgetune.preprocessing import PreprocessSpec

# A C program (not C++) that includes the header and writes the array, its length, the labels
# and the constants back out: what a firmware would read.
MAIN_C = r"""
#include <stdio.h>
#include "model_data.h"
int main(int argc, char** argv) {
  FILE* f = fopen(argv[1], "wb");
  fwrite(g_model_data, 1, g_model_data_len, f);
  fclose(f);
  printf("%u %u %d %d %d\n", g_model_data_len, EDGETUNE_MODEL_DATA_LEN,
         EDGETUNE_INPUT_HEIGHT, EDGETUNE_INPUT_WIDTH, EDGETUNE_INPUT_CHANNELS);
  printf("%.9g %.9g %.9g %d\n", EDGETUNE_NORM_SCALE, EDGETUNE_NORM_OFFSET,
         EDGETUNE_INPUT_QUANT_SCALE, EDGETUNE_INPUT_QUANT_ZERO_POINT);
  printf("%lu\n", (unsigned long)((size_t)g_model_data % 16));
  for (int i = 0; i < EDGETUNE_NUM_LABELS; ++i) printf("%s\n", g_model_labels[i]);
  return 0;
}
"""

needs_compilers = pytest.mark.skipif(
    not (shutil.which("cc") and shutil.which("c++")), reason="needs the system cc and c++"
)


def _compile_and_run(folder: Path, out: Path) -> list[str]:
    (folder / "main.c").write_text(MAIN_C)
    for compiler, source in (("c++", firmware.SOURCE_FILE), ("cc", "main.c")):
        subprocess.run(
            [compiler, "-c", "-Wall", "-Werror", source],
            cwd=folder,
            check=True,
            capture_output=True,
        )
    subprocess.run(
        ["c++", "model_data.o", "main.o", "-o", "reader"],
        cwd=folder,
        check=True,
        capture_output=True,
    )
    done = subprocess.run(
        [str(folder / "reader"), str(out)], check=True, capture_output=True, text=True
    )
    return done.stdout.splitlines()


@needs_compilers
def test_exported_array_compiles_and_equals_the_file(model_file: Path, tmp_path: Path) -> None:
    labels = ("zero", 'quote"d', "ünï\\code?")  # escapes a label's bytes survive
    spec = PreprocessSpec(**{**SPEC.to_dict(), "labels": labels})
    written = firmware.export(model_file, spec, tmp_path)

    assert sorted(written) == [firmware.SOURCE_FILE, firmware.HEADER_FILE]
    assert "alignas(16)" in written[firmware.SOURCE_FILE].read_text()
    lines = _compile_and_run(tmp_path, tmp_path / "roundtrip.tflite")

    assert (tmp_path / "roundtrip.tflite").read_bytes() == model_file.read_bytes()
    size = model_file.stat().st_size
    assert lines[0] == f"{size} {size} {spec.height} {spec.width} {spec.channels}"
    norm_scale, norm_offset, q_scale, q_zero = lines[1].split()
    assert float(norm_scale) == pytest.approx(spec.scale)
    assert float(norm_offset) == spec.offset
    assert float(q_scale) > 0 and -128 <= int(q_zero) <= 127
    assert lines[2] == "0"  # 16-byte aligned
    assert lines[3:] == list(labels)


def test_refuses_an_empty_model_or_a_float_tensor() -> None:
    q = firmware.Quantization(0.1, 0)
    with pytest.raises(EdgetuneError, match="empty"):
        firmware.c_sources(b"", SPEC, q, q)
    with pytest.raises(EdgetuneError, match="input quantization scale 0.0"):
        firmware.c_sources(b"\0", SPEC, firmware.Quantization(0.0, 0), q)
