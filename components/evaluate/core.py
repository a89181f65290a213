"""evaluate: every stage's accuracy on the test split, the .tflite files run in LiteRT, and the gate.

The gate judges the exact int8 file that would ship, as the device runtime runs it.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from edgetune import files, litert
from edgetune.components.common.outputs import StepOutput
from edgetune.config import DeviceProfile
from edgetune.errors import EdgetuneError
from edgetune.split import EXTRACTOR_FILE, HEAD_FILE, Head, embeddings
from edgetune.step_config import StepConfig

KERAS_STAGES = ("float", "pruned", "qat")
TFLITE_STAGES = ("tflite_float", "tflite_int8")
# The split model (int8 extractor + float32 head), judged when convert wrote one.
SPLIT_STAGE = "tflite_split"
# What summary.json and the MLflow metrics keep of each stage; the bundle keeps the int8 ones.
HEADLINE_KEYS = ("accuracy", "size_bytes", "gzip_bytes", "latency_ms_p50")
CANDIDATE_ALIAS = "candidate"


class GatePolicy(StepConfig):
    """When the int8 file may ship: accurate enough, and not much worse than the float model.

    It reaches `min_accuracy` on the test split and loses at most `max_drop_points`
    percentage points against the float Keras model.
    """

    step: ClassVar[str] = "gate"

    min_accuracy: float = Field(
        0.95, ge=0, le=1, description="test accuracy the int8 file must reach (a fraction)"
    )
    max_drop_points: float = Field(
        1.0, ge=0, description="most accuracy points the int8 file may lose against float"
    )


class EvaluateConfig(StepConfig):
    """How evaluate measures (the gate's thresholds are GatePolicy)."""

    step: ClassVar[str] = "evaluate"

    latency_runs: int = Field(
        200, ge=1, description="timed LiteRT invocations per .tflite file (p50 reported)"
    )


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]
) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/support and the confusion matrix (rows: truth).

    A class never predicted (or never present) scores 0, not NaN.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    indices = list(range(len(labels)))
    precision, recall, _, support = precision_recall_fscore_support(
        y_true, y_pred, labels=indices, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion": confusion_matrix(y_true, y_pred, labels=indices).tolist(),
    }


def plot_confusion(
    confusion: list[list[int]], labels: list[str], title: str, out: str | os.PathLike
) -> Path:
    """Writes the confusion matrix as a PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(confusion)
    size = max(4.0, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set(
        xticks=range(len(labels)),
        yticks=range(len(labels)),
        xlabel="predicted",
        ylabel="true",
        title=title,
    )
    ax.set_xticklabels(labels, rotation=90)
    ax.set_yticklabels(labels)
    for (i, j), v in np.ndenumerate(matrix):
        if v:
            ax.text(
                j,
                i,
                str(v),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if v > matrix.max() / 2 else "black",
            )
    fig.tight_layout()
    with files.atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(out)


def keras_predictions(model: Any, x: np.ndarray) -> np.ndarray:
    """The predicted class index of each input of `x` by a Keras model."""
    from edgetune.components.common import training

    return np.argmax(training.scores(model, x), axis=-1)


def tflite_stage(
    path: str | os.PathLike, x: np.ndarray, latency_runs: int = 200
) -> tuple[np.ndarray, dict[str, Any]]:
    """Predictions of a .tflite in LiteRT (one thread) and its size and median latency."""
    interpreter = litert.load(str(path), num_threads=1)
    predictions = np.argmax(litert.predict(interpreter, x), axis=-1)
    data = Path(path).read_bytes()
    return predictions, {
        "size_bytes": len(data),
        "gzip_bytes": files.gzip_size(data),
        "latency_ms_p50": litert.median_latency_ms(interpreter, x[:1], runs=latency_runs),
    }


def split_stage(
    model_dir: str | os.PathLike, x: np.ndarray, labels: list[str]
) -> tuple[np.ndarray, dict[str, Any]] | None:
    """Predictions of the split model (int8 extractor in LiteRT + float32 head), or None.

    None when convert wrote no split model into `model_dir`; the sizes are both files'.
    """
    extractor_path, head_path = (Path(model_dir) / n for n in (EXTRACTOR_FILE, HEAD_FILE))
    if not (extractor_path.is_file() and head_path.is_file()):
        return None
    head = Head.from_bytes(head_path.read_bytes())
    if head.shape[1] != len(labels):
        raise EdgetuneError(f"{head_path}: {head.shape[1]} classes for {len(labels)} labels")
    predictions = head.predict(embeddings(litert.load(str(extractor_path), num_threads=1), x))
    sizes = {
        "extractor_bytes": extractor_path.stat().st_size,
        "head_bytes": head_path.stat().st_size,
    }
    return predictions, {**sizes, "size_bytes": sum(sizes.values())}


def device_fit(path: str | os.PathLike) -> dict[str, Any]:
    """What the device needs of the int8 file, measured on the file: full-integer, arena.

    convert's report beside the file holds the same figures, measured on the same bytes
    when its sha256 is the file's: they are taken from it then, measured afresh otherwise.
    """
    from edgetune.components.convert import arena

    report = Path(path).parent / files.CONVERT_REPORT
    earlier = files.read_json(report).get("tflite_int8") if report.is_file() else None
    fit = arena.device_fit(path, earlier)
    return {k: fit[k] for k in arena.FIT_KEYS}


def gate(
    stages: dict[str, dict[str, Any]],
    policy: GatePolicy,
    device: DeviceProfile,
    search: tuple[bool, str] | None = None,
) -> tuple[bool, list[str]]:
    """The ship decision for the int8 file, with one reason per check, passed or not.

    `search` is the compression search's own check (`SearchReport.gate_check`): a file no
    candidate of which passed the rule (e.g. all trail a better champion) never ships.
    """
    int8, reference = stages["tflite_int8"], stages["float"]
    # Rounded: (0.95 - 0.94) * 100 is 1.0000000000000009, and a drop of exactly the allowed
    # points must pass.
    drop = round((reference["accuracy"] - int8["accuracy"]) * 100.0, 9)
    checks = [
        (
            int8["accuracy"] >= policy.min_accuracy,
            f"int8 accuracy {int8['accuracy']:.2%} {'>=' if int8['accuracy'] >= policy.min_accuracy else '<'} minimum {policy.min_accuracy:.2%}",
        ),
        (
            drop <= policy.max_drop_points,
            f"int8 loses {drop:.2f} points against the float model ({reference['accuracy']:.2%}); allowed {policy.max_drop_points:.2f}",
        ),
        (
            int8["size_bytes"] <= device.flash_bytes,
            f"int8 file {int8['size_bytes']:,} bytes {'<=' if int8['size_bytes'] <= device.flash_bytes else '>'} flash budget {device.flash_bytes:,} of {device.name}",
        ),
    ]
    if SPLIT_STAGE in stages:  # a device serves it once it personalizes: it must pass too
        split = stages[SPLIT_STAGE]["accuracy"]
        checks.append(
            (
                split >= policy.min_accuracy,
                f"split model (int8 extractor + head) accuracy {split:.2%} {'>=' if split >= policy.min_accuracy else '<'} minimum {policy.min_accuracy:.2%}",
            )
        )
    if "full_integer_problem" in int8:  # measured on the file itself (evaluate does)
        problem = int8["full_integer_problem"]
        checks.append(
            (
                not problem,
                f"int8 file is {'not ' if problem else ''}full-integer{': ' + problem if problem else ''}",
            )
        )
    if "arena_bytes" in int8:
        ram = int8["arena_bytes"]
        checks.append(
            (
                ram <= device.ram_bytes,
                f"tensor arena {ram:,} bytes ({int8.get('arena_source', 'measured')}) {'<=' if ram <= device.ram_bytes else '>'} RAM budget {device.ram_bytes:,} of {device.name}",
            )
        )
    if search is not None:
        checks.append(search)
    return all(ok for ok, _ in checks), [f"{'pass' if ok else 'FAIL'}: {why}" for ok, why in checks]


@dataclass(frozen=True)
class Evaluation(StepOutput):
    """evaluate's output: every stage's metrics, the gate's verdict, the registered version.

    Attributes:
        stages: stage → accuracy, per_class, confusion (and, for .tflite files, size_bytes,
            gzip_bytes, latency_ms_p50).
        gate: blessed, reasons (one per check), policy.
        n_test: test examples scored.
        registered_version: the model-registry version of the int8 file ("" until registered).
        model_tags: what a later run compares a champion by (its classes and input shape).
    """

    FILE: ClassVar[str] = files.EVALUATION

    stages: dict[str, dict[str, Any]]
    gate: dict[str, Any]
    n_test: int
    registered_version: str = ""
    model_tags: dict[str, str] = field(default_factory=dict)

    @property
    def blessed(self) -> bool:
        """Whether the gate let the int8 file ship."""
        return bool(self.gate["blessed"])

    def to_dict(self) -> dict[str, Any]:
        """The evaluation as written to evaluation.json."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Evaluation:
        """The evaluation from evaluation.json's content."""
        return cls(**d)

    def registered(self, version: str) -> Evaluation:
        """This evaluation, once the int8 file is registered as `version`."""
        return replace(self, registered_version=str(version))

    def registration_tags(self, run_name: str) -> dict[str, str]:
        """Tags of the registered int8 file: every file is registered, blessed or not."""
        return {"blessed": str(self.blessed), "run_name": run_name, **self.model_tags}

    def aliases(self) -> dict[str, str]:
        """Registry aliases to point at the registered version: `candidate`, only when blessed."""
        return {CANDIDATE_ALIAS: self.registered_version} if self.blessed else {}

    def headline(self, stage: str) -> dict[str, Any]:
        """A stage's accuracy and, for a .tflite file, its size and latency."""
        return {k: self.stages[stage][k] for k in HEADLINE_KEYS if k in self.stages[stage]}

    def metrics(self) -> dict[str, float]:
        """Every stage's headline figures as `<stage>_<metric>`, and `blessed` as 0 or 1."""
        flat = {f"{stage}_{k}": v for stage in self.stages for k, v in self.headline(stage).items()}
        return {**flat, "blessed": int(self.blessed)}

    def accuracies(self) -> dict[str, float]:
        """`<stage>_accuracy` for each stage: what the KFP UI compares across runs."""
        return {f"{stage}_accuracy": m["accuracy"] for stage, m in self.stages.items()}

    def summary_part(self) -> dict[str, Any]:
        """Every stage's headline figures, and the gate's verdict with the registered model version."""
        gate = {k: self.gate[k] for k in ("blessed", "reasons")}
        return {
            "stages": {stage: self.headline(stage) for stage in self.stages},
            "gate": {**gate, "model_version": self.registered_version},
        }

    def notes(self) -> list[str]:
        """The gate's reasons, one line per check."""
        return list(self.gate["reasons"])


def evaluate_artifacts(
    data_dir: str | os.PathLike,
    model_dirs: dict[str, str | os.PathLike],
    policy: GatePolicy,
    device: DeviceProfile,
    out_dir: str | os.PathLike,
    *,
    latency_runs: int = 200,
    search: tuple[bool, str] | None = None,
) -> Evaluation:
    """`evaluate` on the folders the earlier steps wrote: preprocess's data, one per stage.

    Args:
        data_dir: preprocess's output (test split and preprocessing spec).
        model_dirs: `float` and any other stage of `KERAS_STAGES` (a folder with model.h5),
            and both `TFLITE_STAGES` (a folder with model.tflite).
        policy: the gate thresholds.
        device: the profile whose flash budget the int8 file must fit.
        out_dir: where confusion_<stage>.png is written.
        latency_runs: timed invocations per .tflite file (the median is reported).
        search: the compression search's check (`SearchVerdict.passed`, `.check`), if any.
    """
    from edgetune.components.common import training
    from edgetune.components.qat.core import load_qat_model
    from edgetune.components.search.core import comparison_tags

    loaders = {"float": training.load_model, "pruned": training.load_model, "qat": load_qat_model}
    keras_models = {s: loaders[s](Path(model_dirs[s]) / files.KERAS_MODEL)
                    for s in KERAS_STAGES if s in model_dirs}  # fmt: skip
    tflite_files = {
        s: Path(model_dirs[s]) / files.TFLITE_MODEL for s in TFLITE_STAGES if s in model_dirs
    }
    x_test, y_test = training.load_split(data_dir, "test")
    spec = training.load_spec(data_dir)
    result = evaluate(
        keras_models, tflite_files, x_test, y_test, list(spec.labels), policy, device, out_dir,
        latency_runs=latency_runs, search=search,
    )  # fmt: skip
    shape = [spec.height, spec.width, spec.channels]
    return replace(result, model_tags=comparison_tags(spec.labels, shape))


def evaluate(
    keras_models: dict[str, Any],
    tflite_files: dict[str, str | os.PathLike],
    x_test: np.ndarray,
    y_test: np.ndarray,
    labels: list[str],
    policy: GatePolicy,
    device: DeviceProfile,
    out_dir: str | os.PathLike,
    *,
    latency_runs: int = 200,
    search: tuple[bool, str] | None = None,
) -> Evaluation:
    """Scores every stage on the test split, draws its confusion matrix, and decides the gate.

    Args:
        keras_models: "float" (required), "pruned", "qat" → Keras model.
        tflite_files: {"tflite_float", "tflite_int8"} → .tflite path; when the int8 file's
            folder holds the split model (extractor.tflite, head.npz), it is scored as
            stage `tflite_split` and judged by the gate too.
        x_test: model-ready test inputs.
        y_test: their integer labels.
        labels: class names, index order.
        policy: the gate thresholds.
        device: the profile whose flash budget the int8 file must fit.
        out_dir: where confusion_<stage>.png is written.
        latency_runs: timed invocations per .tflite file (the median is reported).
        search: the compression search's check (`SearchReport.gate_check`), if it ran.

    Returns:
        The evaluation, not yet registered; the caller writes it (`Evaluation.write`).
    """
    if latency_runs < 1:
        raise EdgetuneError(f"evaluate latency_runs={latency_runs}; must be >= 1")
    missing = {"float"} - keras_models.keys() | set(TFLITE_STAGES) - tflite_files.keys()
    if missing:
        raise EdgetuneError(f"evaluate is missing stages: {', '.join(sorted(missing))}")
    stages: dict[str, dict[str, Any]] = {}
    for stage in (s for s in KERAS_STAGES if s in keras_models):
        stages[stage] = classification_metrics(
            y_test, keras_predictions(keras_models[stage], x_test), labels
        )
    for stage in TFLITE_STAGES:
        predictions, extra = tflite_stage(tflite_files[stage], x_test, latency_runs)
        stages[stage] = {**classification_metrics(y_test, predictions, labels), **extra}
    stages["tflite_int8"].update(device_fit(tflite_files["tflite_int8"]))
    split = split_stage(Path(tflite_files["tflite_int8"]).parent, x_test, labels)
    if split is not None:
        stages[SPLIT_STAGE] = {**classification_metrics(y_test, split[0], labels), **split[1]}
    for stage, metrics in stages.items():
        plot_confusion(
            metrics["confusion"],
            labels,
            f"{stage}: accuracy {metrics['accuracy']:.2%}",
            Path(out_dir) / files.CONFUSION_PNG.format(stage=stage),
        )
    blessed, reasons = gate(stages, policy, device, search)
    return Evaluation(
        stages=stages,
        gate={"blessed": blessed, "reasons": reasons, "policy": policy.model_dump()},
        n_test=int(len(y_test)),
    )
