"""The device fit of an int8 file: measured once, reused by a later step on the same bytes."""

from edgetune import files
from edgetune.components.convert import arena


def test_figures_measured_on_the_same_bytes_are_reused_and_others_measured(model_file):
    measured = arena.device_fit(model_file)
    assert measured["sha256"] == files.sha256_file(model_file)
    assert measured["arena_source"] == "tflite-micro" and measured["arena_bytes"] > 0
    assert measured["full_integer_problem"] == ""

    # Marked figures: taken as they are only when they describe this file's bytes.
    marked = {**measured, "arena_bytes": 12345, "arena_source": "earlier-step"}
    assert arena.device_fit(model_file, marked) == marked
    other = {**marked, "sha256": "0" * 64}
    assert arena.device_fit(model_file, other) == measured
    assert arena.device_fit(model_file, {"sha256": measured["sha256"]}) == measured
