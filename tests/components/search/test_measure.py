"""Candidates measured on the shipped file: LiteRT, TFLite Micro, arena, ops, energy."""

import dataclasses

import numpy as np
from support.agents import SPEC

from edgetune.components.search import measure, micro
from edgetune.config import DeviceProfile

MCU = DeviceProfile("mcu", flash_bytes=1 << 20, ram_bytes=1 << 18, latency_budget_ms=10.0,
                    macs_per_ms=1000.0, runtime="tflite-micro", active_power_mw=50.0)  # fmt: skip
# conv 3x3x1 -> 4 filters over 8x8 (valid: 6x6 outputs) + dense 144 -> 3
TINY_MACS = 6 * 6 * 4 * 9 + 144 * 3


def test_tiny_model_measured_in_litert_and_tflite_micro(model_file):
    rng = np.random.default_rng(0)
    x = rng.random((12, SPEC.height, SPEC.width, SPEC.channels), dtype=np.float32)
    y = np.array([0, 1, 2] * 4)

    m = measure.measure(model_file, x, y, MCU, latency_ms=0.5)

    assert (m.flash_bytes, m.macs) == (model_file.stat().st_size, TINY_MACS)
    assert 0 < m.gzip_bytes < m.flash_bytes
    assert m.ops == ["CONV_2D", "FULLY_CONNECTED", "RESHAPE", "SOFTMAX"]
    assert m.tflm_supported is True and m.problems == ()
    # TFLite Micro's reference kernels and LiteRT's differ by a few LSB at most: same classes
    assert m.tflm_agreement == 1.0 and m.tflm_accuracy == m.accuracy
    assert m.arena_bytes > 0 and m.arena_source == "tflite-micro"
    assert m.device_latency_ms_estimate == TINY_MACS / MCU.macs_per_ms
    assert m.energy_uj_estimate == m.device_latency_ms_estimate * 50.0


def test_a_file_tflite_micro_cannot_run_is_reported_not_raised(model_file, tmp_path):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(model_file.read_bytes()[:-64])  # buffers cut off

    run = micro.run_micro(broken, np.zeros((1, 8, 8, 1), np.int8))

    assert run.outputs is None and run.problem.startswith("TFLite Micro failed (exit")


def test_litert_device_skips_tflite_micro_and_energy_without_power(model_file):
    x = np.zeros((2, 8, 8, 1), np.float32)
    pi = dataclasses.replace(MCU, runtime="litert", active_power_mw=None)

    m = measure.measure(model_file, x, np.array([0, 1]), pi, latency_ms=0.5)

    assert m.tflm_supported is None and m.energy_uj_estimate is None


def test_interleaved_latency_gives_one_median_per_file(model_file, other_model_file):
    x = np.zeros((1, 8, 8, 1), np.float32)
    times = measure.interleaved_latency_ms([model_file, other_model_file], x, repeats=2, runs=3)
    assert len(times) == 2 and all(t > 0 for t in times)
