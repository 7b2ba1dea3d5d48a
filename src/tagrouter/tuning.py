"""Self-tuning of the smoothed scorer: choose its settings and the default operating point by inner
cross-validation on the training history only.

The tagger is fitted once on all training queries (unsupervised: it never sees outcomes), so the inner
folds only recount the tag table from arrays, which is cheap. For every candidate setting of
:class:`~tagrouter.scoring.SmoothedScorer` (a small grid that always holds the *mixture point*
α = β = 0, where every tag's value is the model's overall accept rate and the router behaves like the best
single model for the cost), the inner out-of-fold scores of all training queries are pooled and turned
into the routing curve of the benchmark (41 operating points; a pair: top share by score gap goes to the
dearer model; a pool: argmax(score − λ · mean cost)); the criterion is that curve's hull AUC, the judged
metric. A one-standard-error rule (standard error over the inner folds' paired AUC differences) then
prefers the most shrunk candidate within noise of the best, so weak tag evidence falls back to the
mixture. The default knob is the cheapest operating point of the chosen scorer's inner out-of-fold curve
that keeps the best single model's accept rate (the paper's θ*).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import sparse

from tagrouter.scoring import SmoothedScorer, TagTable

#: The mixture point: tags carry no weight, scores are the models' overall accept rates.
MIXTURE = SmoothedScorer(difficulty_weight=0.0, specific_weight=0.0, discrimination=False)


def default_grid() -> list[SmoothedScorer]:
    """The candidate settings, most shrunk first (the order the one-standard-error rule prefers): the
    mixture point, then α (weight of the shared tag difficulty) × β (model-specific deviation) × prior
    strength × discrimination."""
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


def path_grid() -> list[SmoothedScorer]:
    """A one-dimensional path from the mixture point to the AlpacaEval-tuned setting and beyond: the
    weights (α, β) = t · (2, 0.5) for t in 0 … 1.5, plus the plain smoothed rate (α = β = 1)."""
    grid = [MIXTURE]
    for t in (0.25, 0.5, 1.0, 1.5):
        grid.append(SmoothedScorer(difficulty_weight=2.0 * t, specific_weight=0.5 * t))
    grid.append(SmoothedScorer(difficulty_weight=1.0, specific_weight=1.0, discrimination=False))
    return grid


def shrinkage_rank(scorer: SmoothedScorer) -> float:
    """How much a candidate trusts its tags (lower = more shrunk): the one-standard-error rule takes the
    lowest rank within noise of the best."""
    if scorer.difficulty_weight == 0 and scorer.specific_weight == 0:
        return 0.0
    trust = scorer.difficulty_weight + 2 * scorer.specific_weight * 20.0 / (20.0 + scorer.prior_strength)
    return trust + 0.25 * scorer.discrimination


@dataclass(frozen=True)
class OperatingPoint:
    """The default knob (pair: gap threshold θ; pool: utility λ) and what the inner out-of-fold queries
    gave there: accept rate and mean dollars per query, next to the best single model's."""

    rule: str
    knob: float
    accept_rate: float
    mean_cost: float
    best_single: str
    best_single_accept_rate: float
    best_single_mean_cost: float


@dataclass
class TuningReport:
    """What the selection saw and chose: every candidate's inner-CV AUC (mean over repeats) and its
    standard error, the chosen one, the operating point, the inner folds and the time taken."""

    candidates: list[dict[str, Any]]
    auc: list[float]
    auc_se: list[float]
    log_loss: list[float]
    best: int
    chosen: int
    mixture_auc: float
    operating_point: OperatingPoint
    folds: int
    repeats: int
    queries: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.candidates[self.chosen],
            "chosen_auc": self.auc[self.chosen],
            "best_auc": self.auc[self.best],
            "mixture_auc": self.mixture_auc,
            "operating_point": self.operating_point.__dict__,
            "folds": self.folds,
            "repeats": self.repeats,
            "queries": self.queries,
            "seconds": round(self.seconds, 3),
            "grid": [
                {**c, "auc": round(a, 6), "se": round(s, 6), "log_loss": round(x, 6)}
                for c, a, s, x in zip(self.candidates, self.auc, self.auc_se, self.log_loss, strict=True)
            ],
            "notes": self.notes,
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
    incidence: sparse.csr_matrix,
    rows: np.ndarray,
    known: np.ndarray,
    routable: Sequence[int],
) -> np.ndarray:
    """Mean tag value over each query's tags known to ``table`` (``known``: tags with training records);
    a query with none gets each model's overall accept rate (as the router does)."""
    values = scorer.tag_values(table)[:, routable]
    held = incidence[rows].multiply(known[None, :]).tocsr()
    lengths = np.asarray(held.sum(axis=1)).ravel()
    scores = np.asarray(held @ values) / np.maximum(lengths, 1)[:, None]
    scores[lengths == 0] = scorer.empty_scores(table)[routable]
    return scores


def _curve_auc(scores: np.ndarray, accepted: np.ndarray, costs: np.ndarray, expected: np.ndarray) -> float:
    """Hull AUC of the benchmark's 41-point routing curve (DESIGN.md §4) of ``scores`` on these queries."""
    from tagrouter.evaluation.metrics import hull, realised
    from tagrouter.evaluation.protocol import pair_choices, pool_choices

    choices = pair_choices(scores) if scores.shape[1] == 2 else pool_choices(scores, expected)
    points = np.array([realised(c, accepted, costs) for c in choices])
    ref = _reference(accepted, costs)
    h = hull(ref.normalise(points[:, 0]), points[:, 1], ref.ar_cheapest)
    xs = np.unique(np.concatenate(([0.0, 1.0], h.x[(h.x > 0) & (h.x < 1)])))
    ys = h(xs)
    return float(np.sum((ys[1:] + ys[:-1]) / 2 * np.diff(xs)))


def _loss(scores: np.ndarray, accepted: np.ndarray, criterion: str) -> float:
    """Mean log-loss or Brier score of the accept probabilities over all (query, routable model) cells."""
    p = np.clip(scores, 1e-4, 1 - 1e-4)
    if criterion == "brier":
        return float(np.mean((p - accepted) ** 2))
    return float(-np.mean(np.where(accepted, np.log(p), np.log1p(-p))))


def _query_loss(scores: np.ndarray, accepted: np.ndarray) -> np.ndarray:
    """Log-loss of each query's accept probabilities, summed over the routable models."""
    p = np.clip(scores, 1e-4, 1 - 1e-4)
    return -np.where(accepted, np.log(p), np.log1p(-p)).sum(axis=1)


def _reference(accepted: np.ndarray, costs: np.ndarray) -> Any:
    """The benchmark's normalisation; on a subset where the cheapest model is also the best, the dearest
    model stands in for the best (so that the curve still has a cost range)."""
    from tagrouter.evaluation.metrics import Reference

    total, ar = costs.sum(axis=0), accepted.mean(axis=0)
    try:
        return Reference.from_singles(total, ar)
    except ValueError:
        lo, hi = int(np.argmin(total)), int(np.argmax(total))
        return Reference(float(total[lo]), float(ar[lo]), float(total[hi]), float(ar[hi]))


def operating_point(
    scores: np.ndarray, accepted: np.ndarray, costs: np.ndarray, expected: np.ndarray, names: Sequence[str]
) -> OperatingPoint:
    """The cheapest setting of the routing curve (pair: the 41 shares; pool: the 41 λ) whose accept rate on
    these queries reaches the best single model's (when none does: the highest accept rate)."""
    from tagrouter.deciding import choose
    from tagrouter.evaluation.protocol import pair_choices, pool_knobs

    ar_single, cost_single = accepted.mean(axis=0), costs.mean(axis=0)
    best = int(np.lexsort((cost_single, -ar_single))[0])
    rows = np.arange(len(scores))
    if scores.shape[1] == 2:
        strong = int(np.argmax(expected.mean(axis=0)))
        gap = scores[:, strong] - scores[:, 1 - strong]
        order = np.sort(gap)[::-1]
        settings = []
        for choice in pair_choices(scores if strong == 1 else scores[:, ::-1]):
            k = int(choice.sum())
            theta = (
                order[0] + 1.0
                if k == 0
                else order[-1] - 1.0
                if k == len(gap)
                else (order[k - 1] + order[k]) / 2
            )
            picked = np.where(gap > theta, strong, 1 - strong)
            settings.append((float(theta), picked))
        rule = "gap"
    else:
        settings = [(k, choose(scores, expected, "utility", k)) for k in pool_knobs(scores, expected)]
        rule = "utility"
    results = [(knob, accepted[rows, p].mean(), costs[rows, p].mean()) for knob, p in settings]
    feasible = [r for r in results if r[1] >= ar_single[best] - 1e-12]
    knob, ar, cost = (
        min(feasible, key=lambda r: r[2]) if feasible else max(results, key=lambda r: (r[1], -r[2]))
    )
    return OperatingPoint(
        rule,
        float(knob),
        float(ar),
        float(cost),
        names[best],
        float(ar_single[best]),
        float(cost_single[best]),
    )


def select_scorer(
    tag_lists: Sequence[Sequence[str]],
    outcome_codes: np.ndarray,
    model_names: Sequence[str],
    costs: np.ndarray,
    routable_columns: Sequence[int],
    *,
    grid: Sequence[SmoothedScorer] | None = None,
    folds: int = 5,
    repeats: int = 1,
    seed: int = 0,
    one_se: float = 1.0,
    criterion: str = "auc",
    gate: float = 1.0,
) -> tuple[SmoothedScorer, OperatingPoint, TuningReport]:
    """Choose the scorer's settings and the default operating point by inner cross-validation.

    - ``tag_lists``: each training query's tags (from the tagger fitted on all training queries);
    - ``outcome_codes``: (queries × K) 0 win, 1 tie, 2 loss, -1 missing, over every history model
      (routable or context: all feed the difficulty prior);
    - ``costs``: (queries × M) dollars of each routable model's answer (``routable_columns`` order);
    - ``one_se``: the rule's width in standard errors (0: plain best AUC).

    Only queries with an outcome for every routable model score the curves; every query adds to the inner
    tables. Returns the chosen scorer, the operating point and the report."""
    started = time.perf_counter()
    codes = np.asarray(outcome_codes)
    costs = np.asarray(costs, dtype=float)
    routable = list(routable_columns)
    names = [model_names[j] for j in routable]
    grid = list(grid or default_grid())
    if not any(g.difficulty_weight == 0 and g.specific_weight == 0 for g in grid):
        grid.insert(0, MIXTURE)
    order = sorted(range(len(grid)), key=lambda i: shrinkage_rank(grid[i]))
    tags, incidence = _incidence(tag_lists)
    one_hot = _one_hot(codes)
    complete = np.flatnonzero((codes[:, routable] >= 0).all(axis=1))
    accepted = codes[:, routable] != 2
    n = len(tag_lists)
    aucs = np.zeros((repeats, folds, len(grid)))
    pooled = np.zeros((repeats, len(grid)))
    log_loss = np.zeros((repeats, len(grid)))
    query_loss = np.zeros((repeats, len(grid), len(complete)))
    oof = np.zeros((len(grid), n, len(routable)))
    expected = np.zeros((n, len(routable)))
    rng = np.random.default_rng(seed)
    for r in range(repeats):
        fold = rng.permutation(n) % folds
        for f in range(folds):
            train, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            table = _table(tags, list(model_names), incidence, one_hot, train)
            known = table.counts.sum(axis=(1, 2)) > 0
            train_complete = np.intersect1d(train, complete)
            expected[held] = costs[train_complete].mean(axis=0)
            for i, scorer in enumerate(grid):
                oof[i, held] = _scores(scorer, table, incidence, held, known, routable)
        for f in range(folds if one_se > 0 or criterion != "auc" else 0):
            rows = np.intersect1d(np.flatnonzero(fold == f), complete)
            for i in range(len(grid)):
                if criterion == "auc":
                    aucs[r, f, i] = _curve_auc(oof[i, rows], accepted[rows], costs[rows], expected[rows])
                else:
                    aucs[r, f, i] = -_loss(oof[i, rows], accepted[rows], criterion)
        for i in range(len(grid)):
            rows = complete
            query_loss[r, i] = _query_loss(oof[i, rows], accepted[rows])
            log_loss[r, i] = query_loss[r, i].mean() / len(routable)
            if criterion == "auc":
                pooled[r, i] = _curve_auc(oof[i, rows], accepted[rows], costs[rows], expected[rows])
            else:
                pooled[r, i] = aucs[r, :, i].mean()
    auc, loss = pooled.mean(axis=0), log_loss.mean(axis=0)
    mixture = next(i for i, g in enumerate(grid) if g.difficulty_weight == 0 and g.specific_weight == 0)
    # the gate: a candidate must predict the outcomes better than the mixture point, by ``gate`` standard
    # errors of the paired per-query log-loss difference
    d = (query_loss - query_loss[:, [mixture]]).mean(axis=0)
    margin = d.mean(axis=1) + gate * d.std(axis=1, ddof=1) / np.sqrt(max(d.shape[1], 1))
    eligible = [i for i in range(len(grid)) if i == mixture or margin[i] < 0]
    best = max(eligible, key=lambda i: auc[i])
    per_fold = aucs.reshape(-1, len(grid))
    diff = per_fold - per_fold[:, [best]]
    se = diff.std(axis=0, ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else np.zeros(len(grid))
    within = [i for i in order if i in eligible and auc[i] >= auc[best] - one_se * se[i]]
    chosen = within[0] if within else best
    # the operating point from the last repeat's out-of-fold scores of the chosen scorer
    point = operating_point(
        oof[chosen, complete], accepted[complete], costs[complete], expected[complete], names
    )
    report = TuningReport(
        candidates=[g.config() for g in grid],
        auc=auc.tolist(),
        auc_se=se.tolist(),
        log_loss=loss.tolist(),
        best=best,
        chosen=chosen,
        mixture_auc=float(auc[mixture]),
        operating_point=point,
        folds=folds,
        repeats=repeats,
        queries=n,
        seconds=time.perf_counter() - started,
    )
    return replace(grid[chosen]), point, report
