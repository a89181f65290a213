"""Training a softmax-regression head on embeddings with NumPy alone (what a device can run).

The head starts from the one it replaces and is pulled back towards it by an L2 penalty,
`loss = cross-entropy + l2/2 * ||W - W0||²`, so classes a device has few or no samples of
keep what the pipeline taught them. Mini-batch Adam; early stopping on a validation split
keeps the weights of the best validation loss. Memory is bounded up front: the embeddings,
the weights and Adam's moments must fit `memory_budget_bytes`, else the newest samples that
fit are used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgetune.errors import EdgetuneError
from edgetune.split import Head, softmax

# Adam's constants (Kingma & Ba): the defaults every framework uses.
_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8


@dataclass(frozen=True)
class HeadTrainConfig:
    """How a device trains its head.

    Attributes:
        l2: strength of the pull towards the starting head (per weight).
        learning_rate: Adam's step size.
        max_epochs: passes over the training samples at most.
        patience: epochs without a better validation loss before stopping.
        batch_size: samples per step.
        memory_budget_bytes: the most the embeddings, weights and optimizer state may take.
        seed: shuffling order.
    """

    l2: float = 1e-2
    learning_rate: float = 0.05
    max_epochs: int = 200
    patience: int = 15
    batch_size: int = 32
    memory_budget_bytes: int = 16 * 1024 * 1024
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "l2": self.l2 >= 0,
            "learning_rate": self.learning_rate > 0,
            "max_epochs": self.max_epochs >= 1,
            "patience": self.patience >= 1,
            "batch_size": self.batch_size >= 1,
            "memory_budget_bytes": self.memory_budget_bytes >= 1024,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise EdgetuneError(
                f"head training {bad[0]}={getattr(self, bad[0])!r}; accepted: l2 >= 0, "
                "learning_rate > 0, max_epochs, patience, batch_size >= 1, memory >= 1024 bytes"
            )


@dataclass(frozen=True)
class HeadTrainResult:
    """The trained head and how training went (metrics only)."""

    head: Head
    epochs: int
    best_epoch: int
    val_loss: float
    n_train: int
    n_dropped: int = 0
    history: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The figures, JSON-ready (the weights left out)."""
        keys = ("epochs", "best_epoch", "val_loss", "n_train", "n_dropped")
        return {k: getattr(self, k) for k in keys}


def cross_entropy(head: Head, x: np.ndarray, y: np.ndarray) -> float:
    """Mean cross-entropy of `head` on embeddings `x` [N, D] with labels `y` [N]."""
    if len(x) == 0:
        return 0.0
    p = head.probabilities(x)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))))


def accuracy(head: Head, x: np.ndarray, y: np.ndarray) -> float:
    """Share of embeddings `head` classifies as their label (0.0 for none)."""
    return float(np.mean(head.predict(x) == y)) if len(x) else 0.0


def fit_budget(n: int, dim: int, classes: int, budget: int) -> int:
    """How many samples fit `budget` beside the weights and Adam's moments (float32)."""
    fixed = 4 * 4 * (dim + 1) * classes  # weights, start weights, two moments
    return max(0, min(n, (budget - fixed) // (4 * dim)))


def train_head(
    start: Head,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    config: HeadTrainConfig | None = None,
) -> HeadTrainResult:
    """Trains a head from `start` on embeddings; keeps the weights of the best validation loss.

    Args:
        start: the head to begin from and stay near (L2 pull).
        x_train: float32 embeddings [N, D], oldest first.
        y_train: class indices [N].
        x_val: validation embeddings (the training loss decides when this is empty).
        y_val: their class indices.
        config: the training settings.

    Raises:
        EdgetuneError: shapes that do not fit the head, or labels outside its classes.
    """
    config = config or HeadTrainConfig()
    dim, classes = start.shape
    for name, x, y in (("train", x_train, y_train), ("validation", x_val, y_val)):
        if x.ndim != 2 or x.shape[1] != dim or len(x) != len(y):
            raise EdgetuneError(f"{name} embeddings {list(x.shape)}; expected [N, {dim}]")
        if len(y) and (y.min() < 0 or y.max() >= classes):
            raise EdgetuneError(f"{name} labels outside 0..{classes - 1}")
    keep = fit_budget(len(x_train), dim, classes, config.memory_budget_bytes)
    if keep == 0:
        raise EdgetuneError(
            f"memory_budget_bytes={config.memory_budget_bytes} holds no sample of {dim} floats"
        )
    dropped = len(x_train) - keep
    x_train, y_train = x_train[dropped:].astype(np.float32), y_train[dropped:]
    x_check, y_check = (x_val, y_val) if len(x_val) else (x_train, y_train)
    w0 = np.concatenate([start.kernel, start.bias[None]])  # [D + 1, C]: bias as a last row
    w, m, v = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    rng = np.random.default_rng(config.seed)
    best = (cross_entropy(start, x_check, y_check), 0, w0.copy())
    history, step, epoch = [best[0]], 0, 0
    for epoch in range(1, config.max_epochs + 1):
        for batch in np.array_split(rng.permutation(len(x_train)), _batches(len(x_train), config)):
            step += 1
            grad = _gradient(w, w0, x_train[batch], y_train[batch], config.l2)
            m = _BETA1 * m + (1 - _BETA1) * grad
            v = _BETA2 * v + (1 - _BETA2) * grad * grad
            m_hat, v_hat = m / (1 - _BETA1**step), v / (1 - _BETA2**step)
            w = w - config.learning_rate * m_hat / (np.sqrt(v_hat) + _EPS)
        loss = cross_entropy(_head(w), x_check, y_check)
        history.append(loss)
        if loss < best[0] - 1e-6:
            best = (loss, epoch, w.copy())
        elif epoch - best[1] >= config.patience:
            break
    return HeadTrainResult(_head(best[2]), epoch, best[1], best[0], len(x_train), dropped, history)


def _batches(n: int, config: HeadTrainConfig) -> int:
    return max(1, -(-n // config.batch_size))


def _head(w: np.ndarray) -> Head:
    return Head(np.ascontiguousarray(w[:-1], dtype=np.float32), w[-1].astype(np.float32))


def _gradient(w: np.ndarray, w0: np.ndarray, x: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """d/dW of mean cross-entropy + l2/2 ||W - W0||², W holding the bias as its last row."""
    xb = np.concatenate([x, np.ones((len(x), 1), np.float32)], axis=1)
    p = softmax(xb @ w)
    p[np.arange(len(y)), y] -= 1.0
    return (xb.T @ p) / len(x) + l2 * (w - w0)
