"""Self-tuning of the smoothed scorer: its settings and the default operating point, chosen by inner
cross-validation on the training history only.

The tagger is fitted once on all training queries (unsupervised: it never sees outcomes), so the inner
folds only recount the tag table from arrays, which is cheap. Every candidate setting of
:class:`~tagrouter.scoring.SmoothedScorer` (:func:`default_grid`, which always holds the *mixture point*
α = β = 0: every tag's value is then the model's overall accept rate, and the router behaves like the best
single model for the cost) gets inner out-of-fold scores for every training query; these are turned into
the benchmark's routing curve (41 operating points; a pair: the top share by score gap goes to the dearer
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


def _curve_auc(scores: np.ndarray, accepted: np.ndarray, costs: np.ndarray, expected: np.ndarray) -> float:
    """Hull AUC of the benchmark's 41-point routing curve (:mod:`tagrouter.evaluation.metrics`) of
    ``scores`` on these queries."""
    from tagrouter.evaluation.metrics import hull, realised
    from tagrouter.evaluation.protocol import pair_choices

    choices = pair_choices(scores) if scores.shape[1] == 2 else _pool_choices(scores, expected)
    points = np.array([realised(c, accepted, costs) for c in choices])
    ref = _reference(accepted, costs)
    if ref.cost_best <= ref.cost_lo:  # no cost range to route over: every candidate is as good
        return float(accepted.mean(axis=0).max())
    h = hull(ref.normalise(points[:, 0]), points[:, 1], ref.ar_cheapest)
    xs = np.unique(np.concatenate(([0.0, 1.0], h.x[(h.x > 0) & (h.x < 1)])))
    ys = h(xs)
    return float(np.sum((ys[1:] + ys[:-1]) / 2 * np.diff(xs)))


def _pool_knobs(scores: np.ndarray, expected: np.ndarray, n_points: int = 41) -> list[float]:
    """The benchmark's pool knobs (:func:`~tagrouter.evaluation.protocol.pool_knobs`: λ_0 = 0 and λ_k the
    least λ whose expected cost is at most E_0 − k/40 · (E_0 − E_cheapest)), computed from each query's
    path of choices as λ grows (at most one step per model) instead of a binary search: the same knobs,
    many times faster."""
    n, m = scores.shape
    rows = np.arange(n)
    current = scores.argmax(axis=1)
    events_at, events_delta = [], []
    for _ in range(m - 1):
        s_cur, c_cur = scores[rows, current], expected[rows, current]
        cheaper = c_cur[:, None] - expected
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(cheaper > 0, (s_cur[:, None] - scores) / cheaper, np.inf)
        nxt = ratio.argmin(axis=1)
        at = ratio[rows, nxt]
        step = np.isfinite(at)
        if not step.any():
            break
        events_at.append(at[step])
        events_delta.append(expected[rows[step], nxt[step]] - c_cur[step])
        current = np.where(step, nxt, current)
    start = float(expected[rows, scores.argmax(axis=1)].mean())
    cheapest = float(expected.min(axis=1).mean())
    targets = start - np.arange(1, n_points) / (n_points - 1) * (start - cheapest)
    targets += 1e-12 * max(abs(start), 1.0)
    if not events_at:
        return [0.0] * n_points
    at, delta = np.concatenate(events_at), np.concatenate(events_delta)
    order = np.argsort(at, kind="stable")
    at, spent = at[order], np.minimum.accumulate(start + np.cumsum(delta[order]) / n)
    picks = np.minimum(np.searchsorted(-spent, -targets, side="left"), len(at) - 1)
    return [0.0, *(np.maximum(at[picks], 0.0) * (1 + 1e-9)).tolist()]


def _pool_choices(scores: np.ndarray, expected: np.ndarray) -> list[np.ndarray]:
    """Chosen column per query at each of :func:`_pool_knobs`."""
    return [(scores - k * expected).argmax(axis=1) for k in _pool_knobs(scores, expected)]


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
    """The cheapest of the curve's 41 settings (pair: gap thresholds θ at the 41 shares; pool: the 41 λ)
    whose accept rate on these queries reaches the best single model's; when none does, the one with the
    highest accept rate."""
    from tagrouter.evaluation.protocol import pair_choices

    ar_single, cost_single = accepted.mean(axis=0), costs.mean(axis=0)
    best = int(np.lexsort((cost_single, -ar_single))[0])
    rows = np.arange(len(scores))
    settings: list[tuple[float, np.ndarray]] = []
    if scores.shape[1] == 2:
        rule, strong = "gap", int(np.argmax(expected.mean(axis=0)))
        gap = scores[:, strong] - scores[:, 1 - strong]
        ranked = np.sort(gap)[::-1]
        for choice in pair_choices(np.column_stack([-gap, gap])):
            k = int(choice.sum())
            if k == 0:
                theta = ranked[0] + 1.0
            elif k == len(gap):
                theta = ranked[-1] - 1.0
            else:
                theta = (ranked[k - 1] + ranked[k]) / 2
            settings.append((float(theta), np.where(gap > theta, strong, 1 - strong)))
    else:
        rule = "utility"
        settings = [(k, (scores - k * expected).argmax(axis=1)) for k in _pool_knobs(scores, expected)]
    results = [(knob, accepted[rows, p].mean(), costs[rows, p].mean()) for knob, p in settings]
    feasible = [r for r in results if r[1] >= ar_single[best] - 1e-12]
    if feasible:
        knob, ar, cost = min(feasible, key=lambda r: r[2])
    else:
        knob, ar, cost = max(results, key=lambda r: (r[1], -r[2]))
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
            auc[r, i] = _curve_auc(oof[i, c], accepted[c], costs[c], expected[c])
            for f in range(folds if one_se > 0 else 0):
                rows = np.intersect1d(np.flatnonzero(fold == f), c)
                fold_auc[r, f, i] = _curve_auc(oof[i, rows], accepted[rows], costs[rows], expected[rows])
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
