"""Knowledge distillation: a smaller student learns from the fine-tuned model (the teacher).

Loss (Hinton et al., 2015): `α·CE(labels, student) + (1−α)·T²·KL(softmax(t/T) ‖ softmax(s/T))`,
with t and s the teacher's and the student's logits. The T² keeps the soft term's gradients
on the scale of the hard one as T grows. The teacher's logits are computed once, before
training, and travel with the labels. Both models end in a softmax, so logits are taken as
log-probabilities: they differ from the pre-softmax values by a constant per example, which
the softmax at any temperature ignores.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgetune.config import DeviceProfile
from edgetune.errors import EdgetuneError

STUDENT = re.compile(r"^digitnet@(?P<width>\d*\.?\d+)$")
_EPS = 1e-7


@dataclass(frozen=True)
class DistillSettings:
    """How the student learns: the hard-label weight α and the temperature T."""

    alpha: float = 0.5
    temperature: float = 4.0
    epochs: int = 8
    learning_rate: float = 3e-3
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0 or self.temperature <= 0:
            raise EdgetuneError(
                f"distillation alpha={self.alpha}, temperature={self.temperature}; "
                "accepted: 0 <= alpha <= 1, temperature > 0"
            )


def student_width(student: str) -> float:
    """The width multiplier of a student id `digitnet@<width>` (e.g. `digitnet@0.25`)."""
    match = STUDENT.fullmatch(student)
    if not match or not 0 < float(match["width"]) <= 1:
        raise EdgetuneError(
            f"search student {student!r}; accepted: 'teacher' or 'digitnet@<width>' with 0 < width <= 1"
        )
    return float(match["width"])


def build_student(student: str, input_shape: Sequence[int], n_classes: int) -> Any:
    """A randomly initialised digitnet of the student's width with a softmax head."""
    from tf_keras import Model, layers

    from edgetune.zoo.architectures import digitnet

    backbone = digitnet(input_shape, width=student_width(student))
    for layer in backbone.layers:
        # Trained from scratch on a few thousand images, BatchNorm's moving statistics at
        # the zoo's momentum (0.999) lag far behind and the student scores near chance in
        # inference mode; 0.9 lets them follow within a few epochs.
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = 0.9
    head = layers.Dense(n_classes, activation="softmax", name="head")(backbone.output)
    return Model(backbone.input, head, name=f"student_{student_width(student):g}")


def check_student_fits(student: str, model: Any, device: DeviceProfile) -> None:
    """Refuses a student whose int8 weights or activations cannot fit the device.

    At int8 a weight is a byte, so the parameter count is a floor on the file's size; the
    peak activation is a floor on the arena. A student over either cannot fit however it is
    pruned (pruning leaves the dense file's size unchanged).

    Raises:
        EdgetuneError: one line with the student, the figure and the budget.
    """
    from edgetune.zoo.costs import peak_activation_bytes

    params, peak = model.count_params(), peak_activation_bytes(model)
    if params > device.flash_bytes:
        raise EdgetuneError(
            f"search student {student!r}: {params} parameters (>= {params} B at int8) do not "
            f"fit {device.name}'s flash of {device.flash_bytes} B; choose a smaller width"
        )
    if peak > device.ram_bytes:
        raise EdgetuneError(
            f"search student {student!r}: peak activations of {peak} B do not fit "
            f"{device.name}'s RAM of {device.ram_bytes} B; choose a smaller width or input"
        )


def teacher_logits(teacher: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The teacher's logits (log-probabilities) for `x`: computed once, reused every epoch."""
    probabilities = teacher.predict(x, batch_size=batch_size, verbose=0)
    return np.log(np.clip(probabilities, _EPS, 1.0)).astype(np.float32)


def distillation_loss(n_classes: int, alpha: float, temperature: float) -> Any:
    """A Keras loss over `y = [one-hot labels | teacher logits]` and the student's softmax."""
    import tensorflow as tf

    def loss(y: Any, student_probabilities: Any) -> Any:
        labels, logits = y[:, :n_classes], y[:, n_classes:]
        hard = tf.keras.losses.categorical_crossentropy(labels, student_probabilities)
        student_logits = tf.math.log(tf.clip_by_value(student_probabilities, _EPS, 1.0))
        soft_teacher = tf.nn.softmax(logits / temperature)
        soft_student = tf.nn.softmax(student_logits / temperature)
        kl = tf.reduce_sum(
            soft_teacher * (tf.math.log(soft_teacher + _EPS) - tf.math.log(soft_student + _EPS)),
            axis=-1,
        )
        return alpha * hard + (1.0 - alpha) * temperature**2 * kl

    return loss


def distill(
    student: Any,
    logits: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    settings: DistillSettings,
) -> dict[str, list[float]]:
    """Trains `student` in place on the labels and the teacher's `logits`; returns the history.

    With alpha=1 this is plain training on the labels: the student-alone baseline.
    """
    import tf_keras as keras

    n_classes = logits.shape[1]
    keras.utils.set_random_seed(settings.seed)
    targets = np.concatenate([np.eye(n_classes, dtype=np.float32)[y], logits], axis=1)
    student.compile(
        optimizer=keras.optimizers.Adam(settings.learning_rate),
        loss=distillation_loss(n_classes, settings.alpha, settings.temperature),
    )
    history = student.fit(
        x, targets, batch_size=settings.batch_size, epochs=settings.epochs, shuffle=True, verbose=0
    )
    return {k: [float(v) for v in vs] for k, vs in history.history.items()}
