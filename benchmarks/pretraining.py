"""Does the pretraining earn its place? The embedded backbone fine-tuned vs. from scratch.

The same architecture, trained on the same data and split for the same epochs.

    .venv/bin/python -m benchmarks.pretraining [--seeds 0 1 2] [--preset default]

Both arms run the default preset's fine_tune settings (head + unfreeze epochs); the scratch
arm trains every layer for the same total epochs at the head's learning rate. Test accuracy
is measured on the test split the pipeline uses; several seeds, medians reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import edgetune  # noqa: F401 - sets TF_USE_LEGACY_KERAS before TensorFlow
from benchmarks.common import ZOO_ID, prepared_data
from edgetune.components.common import training
from edgetune.components.fine_tune.core import FineTuneConfig, fine_tune
from edgetune.pipelines.params import resolve_preset
from edgetune.zoo.registry import load_zoo

__all__ = ["ZOO_ID", "compare", "prepared_data"]

SEEDS = (0, 1, 2, 3, 4)


def compare(preset_name: str, seeds: list[int]) -> dict:
    """Test accuracy of the pretrained and the from-scratch arm for each seed, with medians."""
    preset = resolve_preset(preset_name)
    keys = (
        "head_epochs",
        "unfreeze_epochs",
        "head_learning_rate",
        "unfreeze_learning_rate",
        "batch_size",
        "patience",
    )
    entry = load_zoo()[ZOO_ID]
    results: dict[str, list[float]] = {"pretrained": [], "scratch": []}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = prepared_data(preset, Path(tmp))
        x_test, y_test = training.load_split(data_dir, "test")
        for seed in seeds:
            config = FineTuneConfig(**{k: preset[k] for k in keys if k in preset}, seed=seed)
            for arm in (
                "pretrained",
                "scratch",
            ):  # interleaved: both arms see the same machine state
                start = time.perf_counter()
                model, _ = fine_tune(entry, data_dir, config, pretrained=arm == "pretrained")
                results[arm].append(training.accuracy(model, x_test, y_test))
                print(
                    f"seed {seed} {arm}: test accuracy {results[arm][-1]:.4f} ({time.perf_counter() - start:.0f} s)",
                    flush=True,
                )
    return {
        "preset": preset_name,
        "epochs": preset["head_epochs"] + preset["unfreeze_epochs"],
        "seeds": list(seeds),
        "n_test": int(len(y_test)),
        "test_accuracy": results,
        "median": {arm: statistics.median(v) for arm, v in results.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    args = parser.parse_args()
    print(json.dumps(compare(args.preset, args.seeds), indent=2))


if __name__ == "__main__":
    main()
