"""Distillation: the loss is Hinton's, and a student learns from the teacher's logits."""

import dataclasses

import numpy as np
import pytest
from support.models import LABELS, model_ready

from edgetune.components.search import distill
from edgetune.config import DeviceProfile
from edgetune.errors import EdgetuneError


def _numpy_loss(onehot, teacher_logits, student_p, alpha, t):
    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    ce = -(onehot * np.log(student_p)).sum(axis=1)
    pt, ps = softmax(teacher_logits / t), softmax(np.log(student_p) / t)
    return alpha * ce + (1 - alpha) * t**2 * (pt * np.log(pt / ps)).sum(axis=1)


def test_loss_is_alpha_ce_plus_t_squared_kl():
    rng = np.random.default_rng(0)
    onehot = np.eye(3, dtype=np.float32)[[0, 2]]
    logits = rng.normal(size=(2, 3)).astype(np.float32)
    student = rng.dirichlet(np.ones(3), size=2).astype(np.float32)
    y = np.concatenate([onehot, logits], axis=1)

    got = distill.distillation_loss(3, alpha=0.3, temperature=4.0)(y, student).numpy()

    np.testing.assert_allclose(got, _numpy_loss(onehot, logits, student, 0.3, 4.0), rtol=1e-4)
    # a student that matches the teacher pays only the hard term
    teacher_p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    same = distill.distillation_loss(3, 0.3, 4.0)(y, teacher_p.astype(np.float32)).numpy()
    np.testing.assert_allclose(same, 0.3 * -(onehot * np.log(teacher_p)).sum(axis=1), rtol=1e-3)


@pytest.mark.parametrize("student", ["mobilenet", "digitnet@0", "digitnet@2", "digitnet@x"])
def test_unknown_student_is_one_line(student):
    with pytest.raises(EdgetuneError, match=f"search student '{student}'; accepted: 'teacher' or"):
        distill.student_width(student)


def test_a_student_that_cannot_fit_is_one_line():
    student = distill.build_student("digitnet@0.125", (16, 16, 1), 3)
    small = DeviceProfile("sensor", flash_bytes=1000, ram_bytes=1 << 20, latency_budget_ms=1.0,
                          macs_per_ms=1.0)  # fmt: skip
    with pytest.raises(EdgetuneError, match=r"'digitnet@0.125': \d+ parameters .* flash of 1000 B"):
        distill.check_student_fits("digitnet@0.125", student, small)
    no_ram = dataclasses.replace(small, flash_bytes=1 << 20, ram_bytes=100)
    with pytest.raises(EdgetuneError, match="peak activations of .* RAM of 100 B"):
        distill.check_student_fits("digitnet@0.125", student, no_ram)
    distill.check_student_fits(
        "digitnet@0.125", student, dataclasses.replace(small, flash_bytes=1 << 20)
    )


@pytest.mark.slow
def test_student_learns_from_the_teacher_alone(float_run):
    x, y = model_ready(float_run.data_dir, "train")
    x_test, y_test = model_ready(float_run.data_dir, "test")
    logits = distill.teacher_logits(float_run.model, x)
    student = distill.build_student("digitnet@0.125", x.shape[1:], len(LABELS))
    assert student.count_params() < float_run.model.count_params()

    # alpha=0: no label is seen; whatever the student knows comes from the teacher's logits
    distill.distill(
        student, logits, x, y, distill.DistillSettings(alpha=0.0, epochs=10, batch_size=16)
    )

    predicted = np.argmax(student.predict(x_test, verbose=0), axis=-1)
    teacher = np.argmax(float_run.model.predict(x_test, verbose=0), axis=-1)
    assert np.mean(predicted == teacher) > 0.6  # 3 classes: chance is 1/3
