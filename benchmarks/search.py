"""The compression search on the default data: every candidate measured, the rule's choice.

    .venv/bin/python -m benchmarks.search [--seeds 3] [--out r.json]

One fine-tuned float model (the default preset), then each candidate of the space below
through components/search (branch: distil / prune / quantize; measure: LiteRT, TFLite Micro,
arena, ops, energy for cortex-m7; select: the rule), the Pareto plot, the chosen candidate
against today's fixed recipe (50% prune, PQAT, int8), and distilled students against the
same students trained on the labels alone (same epochs; `--seeds` seeds each).
Wall time: the search run one candidate after another (kfp.local 2.17.3 runs the DAG's
branches two at a time) and the cluster estimate, fine-tune plus the longest branch.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import RESULTS_DIR, ZOO_ID, Progress, default_preset, emit, prepared_data
from edgetune.components.common import training
from edgetune.components.search.core import CandidateSpec, Scored, select

FIXED_RECIPE = CandidateSpec("teacher", 0.5, "qat_int8")
SPACE = [
    *(CandidateSpec("teacher", s, q) for s in (0.0, 0.5, 0.75) for q in ("ptq_int8", "qat_int8")),
    CandidateSpec("teacher", 0.5, "float16"),
    CandidateSpec("digitnet@0.5", 0.5, "ptq_int8"),
    CandidateSpec("digitnet@0.25", 0.5, "ptq_int8"),
]
STUDENT_WIDTHS = ("digitnet@0.5", "digitnet@0.25")
DEVICE = "cortex-m7"


def _configs(preset: dict[str, Any]) -> tuple[Any, Any, Any]:
    from edgetune.components.fine_tune.core import FineTuneConfig
    from edgetune.components.prune.core import PruneConfig
    from edgetune.components.qat.core import QatConfig

    seed, batch = preset.get("seed", 0), preset["batch_size"]
    keys = ("head_epochs", "unfreeze_epochs", "head_learning_rate", "unfreeze_learning_rate")
    return (
        FineTuneConfig(**{k: preset[k] for k in keys}, batch_size=batch,
                       patience=preset["patience"], seed=seed),
        PruneConfig(target_sparsity=0.5, epochs=preset["prune_epochs"],
                    learning_rate=preset["prune_learning_rate"], batch_size=batch, seed=seed),
        QatConfig(epochs=preset["qat_epochs"], learning_rate=preset["qat_learning_rate"],
                  batch_size=batch, seed=seed),
    )  # fmt: skip


def candidates(data_dir: Path, preset: dict, work: Path, log: Progress) -> dict[str, Any]:
    """Fine-tunes once, builds and measures every candidate, applies the rule."""
    from edgetune.components.fine_tune.core import fine_tune
    from edgetune.components.search import branch, measure
    from edgetune.components.search.distill import DistillSettings, teacher_logits
    from edgetune.components.search.pareto import pareto_plot
    from edgetune.config import device_profile
    from edgetune.zoo.registry import load_zoo

    device = device_profile(DEVICE)
    ft, prune_config, qat_config = _configs(preset)
    x_train, _ = training.load_split(data_dir, "train")
    x_test, y_test = training.load_split(data_dir, "test")
    representative = x_train[np.random.default_rng(0).permutation(len(x_train))[:200]]
    start = time.perf_counter()
    teacher, _ = fine_tune(load_zoo()[ZOO_ID], data_dir, ft)
    fine_tune_s = time.perf_counter() - start
    float_accuracy = training.accuracy(teacher, x_test, y_test)
    logits = teacher_logits(teacher, x_train)
    log(f"fine_tune {fine_tune_s:.0f} s, float accuracy {float_accuracy:.4f}")
    built: dict[str, dict[str, Any]] = {}
    for spec in SPACE:
        t0 = time.perf_counter()
        model = branch.student_model(spec, teacher, logits, data_dir, device, DistillSettings())
        path, _ = branch.compress(spec, model, data_dir, representative, work / spec.name,
                               prune_config=prune_config, qat_config=qat_config)  # fmt: skip
        built[spec.name] = {**spec.to_dict(), "file": path,
                            "branch_seconds": time.perf_counter() - t0}  # fmt: skip
        log(f"{spec.name}: {path.stat().st_size:,} B in {built[spec.name]['branch_seconds']:.0f} s")
    names = list(built)
    latencies = measure.interleaved_latency_ms([built[n]["file"] for n in names], x_test[:1])
    rows = []
    for name, latency in zip(names, latencies, strict=True):
        m = measure.measure(built[name]["file"], x_test, y_test, device, latency)
        row = {k: v for k, v in built[name].items() if k != "file"}
        rows.append({**row, **m.to_dict(), "correct": int(round(m.accuracy * len(y_test)))})
        log(f"{name}: accuracy {m.accuracy:.4f}, arena {m.arena_bytes:,} B ({m.arena_source})")
    max_drop = preset.get("max_drop_points", 1.0)
    scored = [Scored(r["name"], r["accuracy"], r["flash_bytes"], r["arena_bytes"],
                     r["latency_ms"], r["tflm_supported"]) for r in rows]  # fmt: skip
    picked = select(scored, float_accuracy, max_drop, device)
    plot = pareto_plot(rows, RESULTS_DIR / "search_pareto.png", chosen=picked.chosen,
                       accuracy_floor=float_accuracy - max_drop / 100)  # fmt: skip
    longest = max(r["branch_seconds"] for r in rows)
    fixed = next(r for r in rows if r["name"] == FIXED_RECIPE.name)
    return {
        "device": DEVICE,
        "n_test": int(len(y_test)),
        "float_accuracy": float_accuracy,
        "max_drop_points": max_drop,
        "candidates": rows,
        "selection": picked.to_dict(),
        "fixed_recipe": FIXED_RECIPE.name,
        "pareto_png": str(plot.relative_to(RESULTS_DIR.parent)),
        "wall": {
            "fine_tune_s": fine_tune_s,
            "search_sequential_s": fine_tune_s + sum(r["branch_seconds"] for r in rows),
            "fixed_recipe_s": fine_tune_s + fixed["branch_seconds"],
            "cluster_estimate_s": fine_tune_s + longest,
        },
        "_teacher": teacher,
        "_logits": logits,
    }


def distillation(
    data_dir: Path, teacher: Any, logits: np.ndarray, seeds: int, log: Progress
) -> dict:
    """Distilled (alpha 0.5, T 4) vs alone (alpha 1: labels only), same epochs, per width."""
    from edgetune.components.search.distill import DistillSettings, build_student, distill

    x, y = training.load_split(data_dir, "train")
    x_test, y_test = training.load_split(data_dir, "test")
    out: dict[str, Any] = {}
    for student in STUDENT_WIDTHS:
        results: dict[str, list[float]] = {"distilled": [], "alone": []}
        for seed in range(seeds):
            for how, alpha in (("distilled", 0.5), ("alone", 1.0)):
                model = build_student(student, x.shape[1:], logits.shape[1])
                distill(model, logits, x, y, DistillSettings(alpha=alpha, seed=seed))
                results[how].append(training.accuracy(model, x_test, y_test))
            log(f"{student} seed {seed}: distilled {results['distilled'][-1]:.4f}, "
                f"alone {results['alone'][-1]:.4f}")  # fmt: skip
        params = build_student(student, x.shape[1:], logits.shape[1]).count_params()
        out[student] = {"params": params, "teacher_params": teacher.count_params(), **results,
                        "seeds": seeds, "epochs": DistillSettings().epochs}  # fmt: skip
    return out


def run(work: Path, *, seeds: int = 3) -> dict[str, Any]:
    """The whole section in `work`: candidates, selection, Pareto plot, distillation."""
    log = Progress("search")
    preset = default_preset()
    data_dir = prepared_data(preset, work)
    result = candidates(data_dir, preset, work, log)
    teacher, logits = result.pop("_teacher"), result.pop("_logits")
    emit(result, str(work / "candidates.json"))  # kept if distillation fails
    result["distillation"] = distillation(data_dir, teacher, logits, seeds, log)
    return result


def main() -> None:
    """Runs the section standalone and prints (or writes) its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        emit(run(Path(tmp), seeds=args.seeds), args.out)


if __name__ == "__main__":
    main()
