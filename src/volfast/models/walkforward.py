"""Walk-forward evaluation: expanding-window folds, Donate et al.'s geometric fold weights, early stopping.

Train on the past, score on the future, always. Hyperparameters are chosen by expanding-window time-series
cross-validation inside the training period; the fold scores are combined with Donate, Cortez, Sanchez and
Ledezma's (2013) geometric weights, which favour the newest folds (oldest to newest 1/16, 1/16, 1/8, 1/4,
1/2 for 5 folds).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["CVResult", "EarlyStopping", "cross_validate", "donate_weights", "expanding_folds", "select"]


def donate_weights(n_folds: int) -> np.ndarray:
    """Geometric fold weights, oldest first, summing to 1: the newest fold 1/2, the one before 1/4, ...,
    the two oldest share the last power (1/16, 1/16, 1/8, 1/4, 1/2 for 5)."""
    if n_folds < 1:
        raise ValueError(f"n_folds must be >= 1, got {n_folds}")
    w = 0.5 ** np.arange(n_folds, 0, -1, dtype=np.float64)  # 2^-n ... 2^-1
    w[0] *= 2.0
    return w


def expanding_folds(n: int, n_folds: int = 5, *, min_block: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    """Indices ``(train, test)`` of ``n_folds`` expanding-window folds over ``n`` time-ordered rows: the rows
    are cut into ``n_folds + 1`` consecutive blocks; fold i trains on blocks 0..i and tests on block i+1."""
    if n_folds < 1:
        raise ValueError(f"n_folds must be >= 1, got {n_folds}")
    block = n // (n_folds + 1)
    if block < min_block:
        raise ValueError(
            f"{n} days are too few for {n_folds} walk-forward folds: each of the {n_folds + 1} blocks "
            f"would hold {block} days, need at least {min_block} (use fewer folds or more days)"
        )
    edges = [n - block * (n_folds - i) for i in range(n_folds + 1)]  # test block starts; extra rows go to 0
    return [(np.arange(0, edges[i]), np.arange(edges[i], edges[i] + block)) for i in range(n_folds)]


@dataclasses.dataclass
class CVResult:
    fold_scores: list[float]
    weights: list[float]
    score: float  # Donate-weighted mean of the fold scores (lower is better)


def cross_validate(
    score: Callable[[np.ndarray, np.ndarray], float], n: int, n_folds: int = 5, *, min_block: int = 2
) -> CVResult:
    """``score(train_idx, test_idx)`` per fold (a loss, lower is better), combined with Donate weights."""
    folds = expanding_folds(n, n_folds, min_block=min_block)
    s = np.array([float(score(tr, te)) for tr, te in folds])
    w = donate_weights(n_folds)
    return CVResult(s.tolist(), w.tolist(), float(np.dot(w, s)))


def select(
    candidates: Sequence[Any],
    score: Callable[[Any, np.ndarray, np.ndarray], float],
    n: int,
    n_folds: int = 5,
    *,
    min_block: int = 2,
) -> tuple[Any, list[CVResult]]:
    """The candidate (e.g. a config) with the lowest Donate-weighted walk-forward score, and all results."""
    if not candidates:
        raise ValueError("select: no candidates")
    results = [
        cross_validate(functools.partial(score, c), n, n_folds, min_block=min_block) for c in candidates
    ]
    best = int(np.argmin([r.score for r in results]))
    return candidates[best], results


class EarlyStopping:
    """Tracks a validation loss; ``step`` returns True when ``patience`` epochs passed without an
    improvement of more than ``min_delta`` (relative). Keeps a copy of the best state."""

    def __init__(self, patience: int, min_delta: float = 1e-4) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience = patience
        self.min_delta = min_delta
        self.best = float("inf")
        self.best_epoch = -1
        self.best_state: Any = None
        self.epoch = -1

    def step(self, val_loss: float, state: Any = None) -> bool:
        self.epoch += 1
        if not np.isfinite(val_loss):
            return True
        if val_loss < self.best * (1 - self.min_delta):
            self.best, self.best_epoch = val_loss, self.epoch
            self.best_state = copy.deepcopy(state)
        return self.epoch - self.best_epoch >= self.patience
