"""Self-tuning of the smoothed scorer: its settings and the default operating point, chosen by inner
cross-validation on the training history only.

The tagger is fitted once on all training queries (unsupervised: it never sees outcomes), so the inner
folds only recount the tag table from arrays, which is cheap. Every candidate setting of
:class:`~tagrouter.scoring.SmoothedScorer` (:func:`default_grid`, which always holds the *mixture point*
α = β = 0: every tag's value is then the model's overall accept rate, and the router behaves like the best
single model for the cost) gets inner out-of-fold scores for every training query; these are turned into
the benchmark's routing curve (:mod:`tagrouter.curves`: 41 operating points; a pair: the top share by score gap goes to the dearer
model; a pool: argmax(score − λ · mean cost)), and the criterion is that curve's hull AUC, the judged
metric, averaged over ``repeats`` inner splits.

Fallback to the mixture: the mixture point competes like any candidate (first in the grid, so it wins
ties), and a history whose tags do not improve the inner curve keeps the mixture's behaviour, up to
inner-CV noise. A stricter, optional ``gate`` lets tags compete only when some candidate predicts the
outcomes better than the mixture point by ``gate`` standard errors of the paired per-query log-loss
difference. The default knob is the cheapest operating point of the chosen scorer's inner out-of-fold
curve that keeps the best single model's accept rate (the paper's θ*).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import sparse

from tagrouter.curves import OperatingPoint, operating_point, routing_auc
from tagrouter.model import RoutingModel
from tagrouter.records import History
from tagrouter.scoring import SmoothedScorer, TagTable

#: The mixture point: tags carry no weight, scores are the models' overall accept rates.
MIXTURE = SmoothedScorer(difficulty_weight=0.0, specific_weight=0.0, discrimination=False)


def default_grid() -> list[SmoothedScorer]:
    """The candidate settings: the mixture point first, then α (weight of the shared tag difficulty)
    ∈ {0.5, 1, 2} × β (model-specific deviation) ∈ {0, 0.5, 1} × prior strength ∈ {40, 10} ×
    discrimination ∈ {off, on}: 37 in all."""
    grid = [MIXTURE]
    for alpha in (0.5, 1.0, 2.0):
        for beta in (0.0, 0.5, 1.0):
            for strength in (40.0, 10.0):
                for discrimination in (False, True):
                    grid.append(
                        SmoothedScorer(
                            prior_strength=strength,
                            difficulty_weight=alpha,
                            specific_weight=beta,
                            discrimination=discrimination,
                        )
                    )
    return grid


def shrinkage_rank(scorer: SmoothedScorer) -> float:
    """How much a candidate trusts its tags (lower = more shrunk): the one-standard-error rule takes the
    lowest rank within noise of the best."""
    if scorer.difficulty_weight == 0 and scorer.specific_weight == 0:
        return 0.0
    trust = scorer.difficulty_weight + 2 * scorer.specific_weight * 20.0 / (20.0 + scorer.prior_strength)
    return trust + 0.25 * scorer.discrimination


@dataclass
class TuningReport:
    """What the selection saw and chose: every candidate's inner-CV AUC (mean over repeats), the AUC's
    standard error (only with the one-standard-error rule) and log-loss, whether the tags passed the
    gate (None without a gate), the chosen candidate, the operating point, the inner folds and the time taken."""

    candidates: list[dict[str, Any]]
    auc: list[float]
    auc_se: list[float]
    log_loss: list[float]
    best: int
    chosen: int
    mixture_auc: float
    gate_passed: bool | None
    operating_point: OperatingPoint
    folds: int
    repeats: int
    queries: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.candidates[self.chosen],
            "chosen_auc": self.auc[self.chosen],
            "best_auc": self.auc[self.best],
            "mixture_auc": self.mixture_auc,
            "gate_passed": self.gate_passed,
            "operating_point": self.operating_point.__dict__,
            "folds": self.folds,
            "repeats": self.repeats,
            "queries": self.queries,
            "seconds": round(self.seconds, 3),
            "grid": [
                {**c, "auc": round(a, 6), "se": round(s, 6), "log_loss": round(x, 6)}
                for c, a, s, x in zip(self.candidates, self.auc, self.auc_se, self.log_loss, strict=True)
            ],
        }


def _incidence(tag_lists: Sequence[Sequence[str]]) -> tuple[list[str], sparse.csr_matrix]:
    tags = list(dict.fromkeys(t for row in tag_lists for t in row))
    index = {t: i for i, t in enumerate(tags)}
    cols = [index[t] for row in tag_lists for t in dict.fromkeys(row)]
    lengths = [len(dict.fromkeys(row)) for row in tag_lists]
    rows = np.repeat(np.arange(len(tag_lists)), lengths)
    data = np.ones(len(cols))
    return tags, sparse.csr_matrix((data, (rows, cols)), shape=(len(tag_lists), len(tags)))


def _one_hot(codes: np.ndarray) -> np.ndarray:
    """(n × K × 3) indicators of win / tie / loss; a missing outcome (-1) is all zeros."""
    return (codes[:, :, None] == np.arange(3)).astype(float)


def _table(
    tags: list[str], models: list[str], incidence: sparse.csr_matrix, one_hot: np.ndarray, rows: np.ndarray
) -> TagTable:
    n, k, _ = one_hot.shape
    flat = one_hot[rows].reshape(len(rows), -1)
    counts = np.asarray(incidence[rows].T @ flat).reshape(len(tags), k, 3)
    return TagTable(
        tags=list(tags), models=list(models), counts=counts, model_counts=flat.sum(axis=0).reshape(k, 3)
    )


def _scores(
    scorer: SmoothedScorer,
    table: TagTable,
    counts: np.ndarray,
    held: sparse.csr_matrix,
    routable: Sequence[int],
) -> np.ndarray:
    """Mean tag value over each held-out query's tags known to ``table`` (``held``: their incidence on the
    table's tags with training records, ``counts``: the table's counts); a query with none gets each
    model's overall accept rate (as the router does)."""
    stats = scorer.table_stats(table)
    values = scorer.row_values(counts, stats)[:, routable]
    lengths = np.asarray(held.sum(axis=1)).ravel()
    scores = np.asarray(held @ values) / np.maximum(lengths, 1)[:, None]
    scores[lengths == 0] = scorer.empty_scores(stats)[routable]
    return scores


def _query_loss(scores: np.ndarray, accepted: np.ndarray) -> np.ndarray:
    """Log-loss of each query's accept probabilities, summed over the routable models."""
    p = np.clip(scores, 1e-4, 1 - 1e-4)
    return -np.where(accepted, np.log(p), np.log1p(-p)).sum(axis=1)


def select_scorer(
    tag_lists: Sequence[Sequence[str]],
    outcome_codes: np.ndarray,
    model_names: Sequence[str],
    costs: np.ndarray,
    routable_columns: Sequence[int],
    *,
    grid: Sequence[SmoothedScorer] | None = None,
    folds: int = 5,
    repeats: int = 2,
    seed: int = 0,
    gate: float | None = None,
    one_se: float = 0.0,
) -> tuple[SmoothedScorer, OperatingPoint, TuningReport]:
    """Choose the scorer's settings and the default operating point by inner cross-validation (see the
    module docstring).

    - ``tag_lists``: each training query's tags (from the tagger fitted on all training queries);
    - ``outcome_codes``: (queries × K) 0 win, 1 tie, 2 loss, -1 missing, over every history model
      (routable or context: all feed the difficulty prior);
    - ``costs``: (queries × M) dollars of each routable model's answer (``routable_columns`` order);
    - ``gate``: if set, tags compete only when some candidate's log-loss beats the mixture point's by
      ``gate`` standard errors (else the mixture point is chosen); None, the default, lets every
      candidate compete on AUC (measured better: the gate also rejects weak real signal on small
      histories);
    - ``one_se``: > 0 takes the most shrunk candidate within that many standard errors (over the inner
      folds' paired AUC differences) of the best; 0, the default, takes the best (measured better).

    Only queries with an outcome for every routable model score the curves; every query adds to the inner
    tables. Returns the chosen scorer, the operating point and the report."""
    started = time.perf_counter()
    codes = np.asarray(outcome_codes)
    costs = np.asarray(costs, dtype=float)
    routable = list(routable_columns)
    names = [model_names[j] for j in routable]
    grid = list(grid or default_grid())
    if MIXTURE not in grid:
        grid.insert(0, MIXTURE)
    mixture = grid.index(MIXTURE)
    tags, incidence = _incidence(tag_lists)
    one_hot = _one_hot(codes)
    complete = np.flatnonzero((codes[:, routable] >= 0).all(axis=1))
    accepted = codes[:, routable] != 2
    n, size = len(tag_lists), len(grid)
    fold_auc = np.zeros((repeats, folds, size))
    auc = np.zeros((repeats, size))
    query_loss = np.zeros((repeats, size, len(complete)))
    oof = np.zeros((size, n, len(routable)))
    expected = np.zeros((n, len(routable)))
    rng = np.random.default_rng(seed)
    for r in range(repeats):
        fold = rng.permutation(n) % folds
        for f in range(folds):
            train, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            table = _table(tags, list(model_names), incidence, one_hot, train)
            counts = table.counts
            held_tags = incidence[held].multiply((counts.sum(axis=(1, 2)) > 0)[None, :]).tocsr()
            expected[held] = costs[np.intersect1d(train, complete)].mean(axis=0)
            for i, scorer in enumerate(grid):
                oof[i, held] = _scores(scorer, table, counts, held_tags, routable)
        c = complete
        for i in range(size):
            query_loss[r, i] = _query_loss(oof[i, c], accepted[c])
            auc[r, i] = routing_auc(oof[i, c], accepted[c], costs[c], expected[c])
            for f in range(folds if one_se > 0 else 0):
                rows = np.intersect1d(np.flatnonzero(fold == f), c)
                fold_auc[r, f, i] = routing_auc(oof[i, rows], accepted[rows], costs[rows], expected[rows])
    mean_auc = auc.mean(axis=0)
    loss = query_loss.mean(axis=(0, 2)) / len(routable)
    d = (query_loss - query_loss[:, [mixture]]).mean(axis=0)
    margin = d.mean(axis=1) + (gate or 0.0) * d.std(axis=1, ddof=1) / np.sqrt(max(d.shape[1], 1))
    signal = gate is None or bool((np.delete(margin, mixture) < 0).any())
    eligible = list(range(size)) if signal else [mixture]
    best = max(eligible, key=lambda i: mean_auc[i])
    chosen, se = best, np.zeros(size)
    if one_se > 0 and signal:
        diff = fold_auc.reshape(-1, size) - fold_auc.reshape(-1, size)[:, [best]]
        se = diff.std(axis=0, ddof=1) / np.sqrt(len(diff))
        within = [i for i in range(size) if mean_auc[i] >= mean_auc[best] - one_se * se[i]]
        chosen = min(within, key=lambda i: shrinkage_rank(grid[i]))
    # the operating point from the last repeat's out-of-fold scores of the chosen scorer
    c = complete
    point = operating_point(oof[chosen, c], accepted[c], costs[c], expected[c], names)
    report = TuningReport(
        candidates=[g.config() for g in grid],
        auc=mean_auc.tolist(),
        auc_se=se.tolist(),
        log_loss=loss.tolist(),
        best=best,
        chosen=chosen,
        mixture_auc=float(mean_auc[mixture]),
        gate_passed=None if gate is None else signal,
        operating_point=point,
        folds=folds,
        repeats=repeats,
        queries=n,
        seconds=time.perf_counter() - started,
    )
    return replace(grid[chosen]), point, report


#: At most this many distinct queries (a seeded sample) take part in the inner cross-validation of a fit.
TUNING_QUERIES = 20_000


def sampled_ids(ids: list[str], max_queries: int = TUNING_QUERIES, seed: int = 0) -> list[str]:
    """The query ids tuning looks at: all of ``ids``, or a random ``max_queries`` of them in their order."""
    if len(ids) <= max_queries:
        return ids
    return [ids[i] for i in np.sort(np.random.default_rng(seed).choice(len(ids), max_queries, replace=False))]


def tune_model(
    model: RoutingModel, history: History, *, max_queries: int = TUNING_QUERIES, seed: int = 0
) -> tuple[SmoothedScorer, OperatingPoint, TuningReport]:
    """:func:`select_scorer` on the history a model was fitted on, with the model's tagger and expected
    costs: what ``TagRouter.fit`` runs when no scorer is given. A model judged several times on one
    query counts with its last outcome."""
    queries = history.unique_queries()
    ids = sampled_ids(list(queries), max_queries, seed)
    row_of = {qid: i for i, qid in enumerate(ids)}
    table = model.table
    codes = np.full((len(ids), len(table.models)), -1, dtype=np.intp)
    for qid, name, outcome in zip(history.query_id, history.model, history.outcome, strict=True):
        row = row_of.get(qid)
        if row is not None:
            codes[row, table.model_index[name]] = outcome
    texts = [queries[qid] for qid in ids]
    tag_lists = [
        tags for start in range(0, len(texts), 1024) for tags in model.tagger.tag(texts[start : start + 1024])
    ]
    routable = [table.model_index[m] for m in model.models]
    return select_scorer(tag_lists, codes, list(table.models), model.expected_costs(texts), routable)
