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
difference.

The default knob keeps a promise on unseen queries: of the chosen scorer's inner out-of-fold curve, the
cheapest of its 41 settings whose accept rate, minus the best single model's on the same queries, has a
one-sided 95% lower confidence bound over the inner folds of at least −``tolerance`` (0.005: half an
accept-rate point); the bound takes the folds of one repeat as the independent samples (the repeats reuse
the same queries). The same rule at other tolerances (:data:`MENU_DROPS`) gives the *menu* of trade-offs
that the fit saves, ``tagrouter inspect`` shows and ``tagrouter calibrate --max-accept-drop`` picks from.

Conversations: where the tuning sample has queries with earlier turns (records' ``earlier`` field), the
chosen scorer's inner out-of-fold scores of those queries are computed under every mode of
:data:`tagrouter.conversation.CANDIDATES` (last message only, weighted with w in a small grid, concatenated;
the inner tables are the same, only the held-out conversation queries' scores differ), and the mode whose
routing curve over those queries has the best hull AUC (mean over the repeats; ties to the earlier mode, the
last message first) is kept; the residual, the default point and the menu then see its scores. Without
conversations nothing of this runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import sparse

from tagrouter.conversation import CANDIDATES, Conversation, joined
from tagrouter.curves import OperatingPoint, apply_knob, knob_settings, routing_auc
from tagrouter.model import RoutingModel
from tagrouter.records import History
from tagrouter.residual import EmbeddingResidual, corrected, embed
from tagrouter.scoring import SmoothedScorer, TagTable
from tagrouter.tagging.base import Tagger

#: The default point's largest tolerated accept-rate drop below the best single model, on unseen queries.
DEFAULT_TOLERANCE = 0.005
#: The tolerated drops of the menu's points (the default's among them).
MENU_DROPS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1)
#: z of a one-sided 95% confidence bound.
CONFIDENCE_Z = 1.645

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
class MenuPoint:
    """One trade-off of the menu: the knob that keeps the accept rate within ``max_accept_drop`` of the
    best single model's on unseen queries (95% bound over the inner folds), and what the inner out-of-fold
    queries gave there: accept rate, its drop's upper bound, mean dollars per query, the saving against
    the best single model and the share of traffic per model."""

    max_accept_drop: float
    knob: float
    accept_rate: float
    drop_bound: float
    mean_cost: float
    saving: float
    shares: dict[str, float]


@dataclass
class TuningReport:
    """What the selection saw and chose: every candidate's inner-CV AUC (mean over repeats), the AUC's
    standard error (only with the one-standard-error rule) and log-loss, whether the tags passed the
    gate (None without a gate), the chosen candidate, the operating point, the menu of trade-offs, the
    embedding residual, the conversation mode (None without conversations in the sample) with each
    candidate mode's inner AUC over the conversation queries, the inner folds and the time taken."""

    candidates: list[dict[str, Any]]
    auc: list[float]
    auc_se: list[float]
    log_loss: list[float]
    best: int
    chosen: int
    mixture_auc: float
    gate_passed: bool | None
    operating_point: OperatingPoint
    menu: list[MenuPoint]
    residual: EmbeddingResidual | None
    residual_auc: dict[str, float] | None
    conversation: Conversation | None
    conversation_auc: list[float] | None
    conversation_queries: int
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
            "menu": [m.__dict__ for m in self.menu],
            "embedding_residual": None
            if self.residual_auc is None
            else {
                "chosen": self.residual is not None,
                **{k: round(v, 6) for k, v in self.residual_auc.items()},
            },
            "conversation": None
            if self.conversation is None
            else {
                "chosen": self.conversation.to_dict(),
                "queries": self.conversation_queries,
                "candidates": [
                    {**c.to_dict(), "auc": round(a, 6)}
                    for c, a in zip(CANDIDATES, self.conversation_auc or [], strict=True)
                ],
            },
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
    return tags, _incidence_on(tag_lists, {t: i for i, t in enumerate(tags)})


def _incidence_on(tag_lists: Sequence[Sequence[str]], index: dict[str, int]) -> sparse.csr_matrix:
    """(rows × tags) indicators of each row's tags among the tags of ``index`` (others are left out)."""
    known = [[index[t] for t in dict.fromkeys(row) if t in index] for row in tag_lists]
    cols = [c for row in known for c in row]
    rows = np.repeat(np.arange(len(known)), [len(row) for row in known])
    return sparse.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(known), len(index)))


@dataclass(frozen=True)
class ConversationTags:
    """The tuning sample's queries with earlier turns (``rows``), the tags of their earlier turns and of
    their earlier turns and text joined (:func:`tagrouter.conversation.joined`): what the choice of the
    conversation mode scores."""

    rows: np.ndarray
    earlier: list[list[str]]
    joined: list[list[str]]


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


def promise_menu(
    oof: Sequence[np.ndarray],
    folds: Sequence[np.ndarray],
    expected: Sequence[np.ndarray],
    accepted: np.ndarray,
    costs: np.ndarray,
    names: Sequence[str],
    drops: Sequence[float] = MENU_DROPS,
) -> tuple[str, int, list[MenuPoint]]:
    """The rule, the best single model's column and, per tolerated drop, the cheapest knob whose accept
    rate keeps within it of the best single model's with 95% confidence (see the module docstring); where
    none does, the knob with the highest bound. ``oof``, ``folds``, ``expected``: one per inner repeat, the
    out-of-fold scores, inner fold ids and expected costs of the queries of ``accepted`` (n × M) and
    ``costs``; the candidate knobs are the curve's 41 settings of the last repeat's scores."""
    ar_single, cost_single = accepted.mean(axis=0), costs.mean(axis=0)
    best = int(np.lexsort((cost_single, -ar_single))[0])
    rows = np.arange(len(accepted))
    rule, settings = knob_settings(oof[-1], expected[-1])
    table = []  # per knob: bound, accept rate, mean cost, shares
    for knob, _ in settings:
        differences, accept, spent, shares = [], [], [], []
        for scores, fold, cost in zip(oof, folds, expected, strict=True):
            choice = apply_knob(rule, knob, scores, cost)
            won = accepted[rows, choice]
            gain = won.astype(float) - accepted[:, best]
            differences += [gain[fold == f].mean() for f in np.unique(fold)]
            accept.append(won.mean())
            spent.append(costs[rows, choice].mean())
            shares.append(np.bincount(choice, minlength=len(names)) / len(choice))
        per_repeat = len(differences) / len(oof)
        bound = np.mean(differences) - CONFIDENCE_Z * np.std(differences, ddof=1) / np.sqrt(per_repeat)
        table.append(
            (knob, float(bound), float(np.mean(accept)), float(np.mean(spent)), np.mean(shares, axis=0))
        )
    menu = []
    for drop in drops:
        feasible = [t for t in table if t[1] >= -drop - 1e-12]
        knob, bound, accept, cost, share = (
            min(feasible, key=lambda t: t[3]) if feasible else max(table, key=lambda t: (t[1], -t[3]))
        )
        menu.append(
            MenuPoint(
                max_accept_drop=drop,
                knob=float(knob),
                accept_rate=accept,
                drop_bound=max(0.0, -bound),
                mean_cost=cost,
                saving=1.0 - cost / cost_single[best] if cost_single[best] > 0 else 0.0,
                shares={n: round(float(x), 6) for n, x in zip(names, share, strict=True)},
            )
        )
    return rule, best, menu


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
    tolerance: float = DEFAULT_TOLERANCE,
    embeddings: np.ndarray | None = None,
    conversations: ConversationTags | None = None,
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
      folds' paired AUC differences) of the best; 0, the default, takes the best (measured better);
    - ``tolerance``: the default point's tolerated accept-rate drop below the best single model on unseen
      queries (see the module docstring);
    - ``embeddings``: the queries' embeddings (n × d); with them, the chosen scorer competes with itself
      plus an embedding residual (:mod:`tagrouter.residual`) on the inner routing curve, and the residual
      is kept (``report.residual``) only where it routes better;
    - ``conversations``: the queries with earlier turns and their tags; with them, the conversation mode
      is chosen (see the module docstring; ``report.conversation``), when at least two per inner fold
      have an outcome for every routable model.

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
    tag_index = {t: i for i, t in enumerate(tags)}
    one_hot = _one_hot(codes)
    complete = np.flatnonzero((codes[:, routable] >= 0).all(axis=1))
    accepted = codes[:, routable] != 2
    n, size = len(tag_lists), len(grid)
    fold_auc = np.zeros((repeats, folds, size))
    auc = np.zeros((repeats, size))
    query_loss = np.zeros((repeats, size, len(complete)))
    rng = np.random.default_rng(seed)
    fold_ids = [rng.permutation(n) % folds for _ in range(repeats)]

    def held_scores(
        scorers: Sequence[SmoothedScorer], train: np.ndarray, held: np.ndarray
    ) -> list[np.ndarray]:
        """Each scorer's scores of the rows ``held`` from the tag table of the rows ``train``."""
        table = _table(tags, list(model_names), incidence, one_hot, train)
        counts = table.counts
        held_tags = incidence[held].multiply((counts.sum(axis=(1, 2)) > 0)[None, :]).tocsr()
        return [_scores(scorer, table, counts, held_tags, routable) for scorer in scorers]

    def conversation_scores(
        scorer: SmoothedScorer, fold: np.ndarray, last: np.ndarray, rows: np.ndarray
    ) -> list[np.ndarray]:
        """Each conversation mode's out-of-fold scores (rows × M) of the conversation queries ``rows``
        (positions into ``conversations.rows``), ``last``: the scorer's out-of-fold scores (n × M)."""
        earlier_in = _incidence_on(conversations.earlier, tag_index)[rows]
        joined_in = _incidence_on(conversations.joined, tag_index)[rows]
        at = conversations.rows[rows]
        before, together = np.zeros((len(rows), len(routable))), np.zeros((len(rows), len(routable)))
        for f in range(folds):
            train, mine = np.flatnonzero(fold != f), np.flatnonzero(fold[at] == f)
            table = _table(tags, list(model_names), incidence, one_hot, train)
            known = (table.counts.sum(axis=(1, 2)) > 0)[None, :]
            for out, held in ((before, earlier_in), (together, joined_in)):
                held_tags = held[mine].multiply(known).tocsr()
                out[mine] = _scores(scorer, table, table.counts, held_tags, routable)
        modes = []
        for mode in CANDIDATES:
            if mode.mode == "weighted":
                modes.append((1.0 - mode.weight) * last[at] + mode.weight * before)
            else:
                modes.append(together if mode.mode == "concatenated" else last[at])
        return modes

    def out_of_fold(scorers: Sequence[SmoothedScorer], fold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inner out-of-fold scores (scorers × n × M) and expected costs (n × M) of one repeat."""
        oof = np.zeros((len(scorers), n, len(routable)))
        expected = np.zeros((n, len(routable)))
        for f in range(folds):
            train, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            expected[held] = costs[np.intersect1d(train, complete)].mean(axis=0)
            for i, scores in enumerate(held_scores(scorers, train, held)):
                oof[i, held] = scores
        return oof, expected

    def corrected_out_of_fold(scorer: SmoothedScorer, fold: np.ndarray, oof: np.ndarray) -> np.ndarray:
        """``oof`` (n × M, the scorer's out-of-fold scores of this repeat) plus the embedding correction
        of each fold, fitted on the other folds' residuals from scores that never saw the row itself."""
        out = np.zeros_like(oof)
        for f in range(folds):
            train, held = fold != f, np.flatnonzero(fold == f)
            honest = np.zeros_like(oof)
            for g in set(range(folds)) - {f}:
                rows = np.flatnonzero(fold == g)
                honest[rows] = held_scores([scorer], np.flatnonzero(train & (fold != g)), rows)[0]
            fit_rows = np.intersect1d(np.flatnonzero(train), complete)
            residual = EmbeddingResidual.fit(embeddings[fit_rows], accepted[fit_rows] - honest[fit_rows])
            out[held] = corrected(oof[held], residual.correction(embeddings[held]))
        return out

    for r, fold in enumerate(fold_ids):
        oof, expected = out_of_fold(grid, fold)
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
    # every repeat's out-of-fold scores of the chosen scorer (the last repeat's are at hand)
    c = complete
    repeated = [out_of_fold([grid[chosen]], fold) for fold in fold_ids[:-1]]
    repeated.append((oof[[chosen]], expected))
    final = [scores[0].copy() for scores, _ in repeated]
    conversation, conversation_auc, conversation_queries = None, None, 0
    if conversations is not None:
        usable = np.flatnonzero(np.isin(conversations.rows, c))
        at = conversations.rows[usable]
        if len(usable) >= 2 * folds:
            per_mode = [
                conversation_scores(grid[chosen], fold, scores, usable)
                for fold, scores in zip(fold_ids, final, strict=True)
            ]
            conversation_auc = [
                float(
                    np.mean(
                        [
                            routing_auc(modes[m], accepted[at], costs[at], e[at])
                            for modes, (_, e) in zip(per_mode, repeated, strict=True)
                        ]
                    )
                )
                for m in range(len(CANDIDATES))
            ]
            best_mode = int(np.argmax(conversation_auc))  # ties: the first, the last message only
            conversation, conversation_queries = CANDIDATES[best_mode], len(usable)
            for scores, modes in zip(final, per_mode, strict=True):
                scores[at] = modes[best_mode]
    residual, residual_auc = None, None
    if embeddings is not None and len(c) >= 2 * folds:
        unhybrid = final[-1]
        hybrid = [
            corrected_out_of_fold(grid[chosen], fold, s) for fold, s in zip(fold_ids, final, strict=True)
        ]
        with_residual = float(
            np.mean(
                [
                    routing_auc(h[c], accepted[c], costs[c], e[c])
                    for h, (_, e) in zip(hybrid, repeated, strict=True)
                ]
            )
        )
        tags_auc = float(mean_auc[chosen])
        if conversation is not None:  # the tags' scores with the chosen conversation mode, as the hybrid's
            tags_auc = float(
                np.mean(
                    [
                        routing_auc(s[c], accepted[c], costs[c], e[c])
                        for s, (_, e) in zip(final, repeated, strict=True)
                    ]
                )
            )
        residual_auc = {"tags": tags_auc, "tags_and_embedding": with_residual}
        if with_residual > tags_auc:
            final = hybrid
            residual = EmbeddingResidual.fit(embeddings[c], accepted[c] - unhybrid[c])
    # the default point and the menu from those scores
    drops = sorted({*MENU_DROPS, tolerance})
    rule, single, menu = promise_menu(
        [scores[c] for scores in final],
        [fold[c] for fold in fold_ids],
        [cost[c] for _, cost in repeated],
        accepted[c],
        costs[c],
        names,
        drops,
    )
    default = menu[drops.index(tolerance)]
    point = OperatingPoint(
        rule,
        default.knob,
        default.accept_rate,
        default.mean_cost,
        names[single],
        float(accepted[c, single].mean()),
        float(costs[c, single].mean()),
    )
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
        menu=menu,
        residual=residual,
        residual_auc=residual_auc,
        conversation=conversation,
        conversation_auc=conversation_auc,
        conversation_queries=conversation_queries,
        folds=folds,
        repeats=repeats,
        queries=n,
        seconds=time.perf_counter() - started,
    )
    return replace(grid[chosen]), point, report


#: At most this many distinct queries (a seeded sample) take part in the inner cross-validation of a fit.
TUNING_QUERIES = 20_000


def sampled_numbers(count: int, max_queries: int, seed: int = 0) -> np.ndarray:
    """The numbers of the distinct queries that tuning looks at: all ``count``, or a seeded random
    ``max_queries`` of them, in order of first appearance."""
    if count <= max_queries:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, max_queries, replace=False))


@dataclass(frozen=True)
class TuningSample:
    """What tuning looks at (the engine's pass gives it, see :func:`tagrouter.engines.run_pass`): the
    sampled distinct queries' texts and tags, in order of first appearance, and their outcome codes per
    history model (``codes[query, model]``: 0 win, 1 tie, 2 loss, -1 none; a model judged several times
    on one query counts with its last outcome), and their earlier conversation turns (None for a first
    turn; ``earlier`` is None when no sampled query has any)."""

    texts: list[str]
    tag_lists: list[list[str]]
    codes: np.ndarray
    models: list[str]
    earlier: list[str | None] | None = None

    def conversation_tags(self, tagger: Tagger) -> ConversationTags | None:
        """The tags the choice of the conversation mode needs, by ``tagger`` (None: no conversations)."""
        rows = [i for i, text in enumerate(self.earlier or ()) if text]
        if not rows:
            return None
        before = [self.earlier[i] for i in rows]
        together = [joined(b, self.texts[i]) for b, i in zip(before, rows, strict=True)]
        return ConversationTags(np.asarray(rows, dtype=np.intp), tagger.tag(before), tagger.tag(together))

    @classmethod
    def of(cls, history: History, tagger: Tagger, max_queries: int = TUNING_QUERIES) -> TuningSample:
        """The tuning sample of an in-memory history, tagged by ``tagger`` (what a fit's pass yields for
        files; the live learner's re-selection uses it on what it has learned)."""
        history, _ = history.deduplicated()
        queries = history.unique_queries()
        ids = list(queries)
        row_of = {ids[i]: r for r, i in enumerate(sampled_numbers(len(ids), max_queries))}
        models = list(dict.fromkeys(history.model))
        column = {m: j for j, m in enumerate(models)}
        codes = np.full((len(row_of), len(models)), -1, dtype=np.intp)
        for qid, name, outcome in zip(history.query_id, history.model, history.outcome, strict=True):
            row = row_of.get(qid)
            if row is not None:
                codes[row, column[name]] = outcome
        texts = [queries[qid] for qid in row_of]
        found = history.unique_earlier()
        earlier = [found.get(qid) for qid in row_of] if found else None
        return cls(texts, tagger.tag(texts), codes, models, earlier if earlier and any(earlier) else None)


def tune_model(
    model: RoutingModel, sample: TuningSample
) -> tuple[SmoothedScorer, OperatingPoint, TuningReport]:
    """:func:`select_scorer` on the tuning sample of the history a model was fitted on (tagged by the
    model's tagger in the same pass; a model judged several times on one query counts with its last
    outcome), with the model's expected costs, query embeddings and, where the sample has conversations,
    the tags of their earlier turns: what ``TagRouter.fit`` runs when no scorer is given."""
    routable = [sample.models.index(m) for m in model.models]
    costs = model.expected_costs(sample.texts)
    return select_scorer(
        sample.tag_lists,
        sample.codes,
        list(sample.models),
        costs,
        routable,
        embeddings=embed(model.tagger, sample.texts),
        conversations=sample.conversation_tags(model.tagger),
    )
