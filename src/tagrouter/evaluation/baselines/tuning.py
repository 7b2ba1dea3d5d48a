"""Hyper-parameter choice on the training fold only: inner k-fold cross-validation scored by Brier score, or
by the hull AUC of the held-out rows' routing curve (the judged metric)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
from sklearn.model_selection import KFold

from tagrouter.curves import routing_auc

P = TypeVar("P")

#: fit each candidate on the rows ``train`` of the training fold and return its acceptance probabilities
#: for the rows ``held`` (one array per candidate, in order; a router may share work between candidates)
FitPredict = Callable[[Sequence[P], np.ndarray, np.ndarray], list[np.ndarray]]


def brier(probabilities: np.ndarray, accepted: np.ndarray) -> float:
    """Mean squared error of acceptance probabilities over all (query, model) cells."""
    return float(np.mean((probabilities - accepted) ** 2))


def select(
    candidates: Sequence[P],
    fit_predict: FitPredict,
    accepted: np.ndarray,
    *,
    folds: int = 3,
    splits: int | None = None,
    seed: int = 0,
    costs: np.ndarray | None = None,
) -> P:
    """The candidate with the lowest mean held-out Brier score over the rows of ``accepted`` (n × M), by
    ``folds``-fold CV; ``splits`` < ``folds`` uses only the first few splits (e.g. 1: a single 2/3 - 1/3
    holdout, for the slower learners). With ``costs`` (n × M dollars) the criterion is instead the highest
    mean hull AUC of the held-out rows' routing curve (:func:`~tagrouter.curves.routing_auc`, the pool knob
    trading scores against the fitted rows' mean costs). Ties go to the earlier
    candidate, so list the simplest first."""
    if len(candidates) == 1:
        return candidates[0]
    all_splits = KFold(folds, shuffle=True, random_state=seed).split(accepted)
    chosen = list(all_splits)[: splits or folds]
    scores = np.zeros(len(candidates))
    for train, held in chosen:
        predictions = fit_predict(candidates, train, held)
        if costs is None:
            scores += [brier(p, accepted[held]) for p in predictions]
        else:
            expected = np.broadcast_to(costs[train].mean(axis=0), (len(held), costs.shape[1]))
            scores -= [routing_auc(p, accepted[held], costs[held], expected) for p in predictions]
    return candidates[int(np.argmin(scores))]


def accept_rates(accepted: np.ndarray, pseudo: float = 1.0) -> np.ndarray:
    """Each model's accept rate with ``pseudo`` observations at 1/2 (never exactly 0 or 1)."""
    return (accepted.sum(axis=0) + pseudo / 2) / (accepted.shape[0] + pseudo)
