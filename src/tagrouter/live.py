"""Learning from live traffic: decide with exploration, learn judged outcomes (counted, or weighted by
their propensities), re-select the scorer's settings as evidence grows, onboard new models.

Feedback on a served answer judges only the model that was chosen (bandit feedback). A router that only
exploits learns about the models it already prefers; :class:`LiveLearner` therefore decides by **Thompson
sampling**: for each request it draws ``draws`` score vectors from the posterior of the smoothed scorer
(per-tag, per-model Beta posteriors of the accept rate, see
:meth:`~tagrouter.scoring.SmoothedScorer.sample_values`), lets the policy's decider choose on each, and
serves the choice of one draw taken at random. The probability that the policy gave each model is then
known exactly (its share of the draws), and that **propensity** travels with the decision and its feedback.

- **Constraints first**: the draws choose only among the models the request's hard constraints allow
  (:mod:`tagrouter.constraints`); an override or a session pin is served as it is (``explore=False``).
- **Budget**: exploring costs the expected dollars it adds over the greedy choice (the decider on the
  posterior mean, what the router alone would choose). Per budget key (a gateway profile), that extra is
  kept at most ``budget_share`` of the expected dollars spent, at every moment: a draw may only choose a
  model whose extra fits what is left. ``budget_share=0`` turns exploration off.
- **Weighting by propensity**: an outcome counts with weight min(1 / propensity, ``max_weight``), divided
  by the mean such weight of that model's learned outcomes (self-normalised inverse-propensity
  weighting): with a clip above 1 the table estimates each model's accept rate on the queries of a tag,
  not on those the router sent it, while a model keeps about one count per judged answer. The default
  clip is 1, plain counting (every outcome once): on the replays of ``tagrouter bench live`` the weights'
  variance cost more routing quality than the selection bias they remove (exploration is what lets every
  model be judged at all). The propensity is still returned and stored with every decision and feedback.
- **Untrusted feedback**: each source (a client key) may add at most ``per_source_weight`` of weight per
  ``window_s``; the rest is refused (and counted), so one key cannot re-steer the pool.
- **Settings follow the evidence**: when the distinct queries learned have grown by ``reselect_growth``
  since the last selection, the scorer's settings and the default operating point are chosen again by
  the fit's inner cross-validation (:func:`tagrouter.tuning.tune_model`) on everything learned, in the
  caller's thread or a background one (``background=True``).
- **New models**: :meth:`LiveLearner.with_catalog` adds catalogue models with no history; their posterior
  is wide, so they get exploration traffic until their estimates are tight, then the share they earn.

Decisions and weights depend only on the learner's state, its random generator and its clock (both
injectable), so a replay is reproducible and replicas that apply the same weighted records learn the same
table.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from tagrouter.catalog import Catalog
from tagrouter.constraints import Allowed, Needs, allowed
from tagrouter.conversation import Conversation
from tagrouter.deciding import Decider, Rule
from tagrouter.errors import DataError
from tagrouter.model import RoutingModel
from tagrouter.records import OUTCOMES, History, HistoryRecord, as_history, query_id
from tagrouter.residual import EmbeddingResidual
from tagrouter.router import Decision, TagRouter

Outcome = Literal["win", "tie", "loss"]


@dataclass(frozen=True)
class LivePolicy:
    """The learner's settings (see the module docstring)."""

    #: exploration's extra expected dollars may reach this share of the dollars spent, per budget key
    budget_share: float = 0.02
    #: posterior draws per decision: propensities are multiples of 1 / draws
    draws: int = 32
    #: the largest inverse-propensity weight of one outcome, before normalisation; 1 (the default): every
    #: outcome counts once (plain counting), which routed better on the replays than weights clipped at
    #: 10 (their variance outweighed the bias they remove; see the README, *Learning from live traffic*)
    max_weight: float = 1.0
    #: weight one source may add per window (None: unbounded)
    per_source_weight: float | None = 100.0
    window_s: float = 3600.0
    #: re-select the settings when the distinct queries learned reach this multiple of the last selection's
    #: (None: never)
    reselect_growth: float | None = 2.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.budget_share < 1.0):
            raise DataError(f"budget_share must be in [0, 1), got {self.budget_share}", field="budget_share")
        if self.draws < 1:
            raise DataError(f"draws must be at least 1, got {self.draws}", field="draws")
        if not self.max_weight >= 1.0:
            raise DataError(f"max_weight must be at least 1, got {self.max_weight}", field="max_weight")
        if self.per_source_weight is not None and self.per_source_weight <= 0:
            raise DataError("per_source_weight must be positive (or None)", field="per_source_weight")
        if self.window_s <= 0:
            raise DataError(f"window_s must be positive, got {self.window_s}", field="window_s")
        if self.reselect_growth is not None and self.reselect_growth <= 1.0:
            raise DataError("reselect_growth must be above 1 (or None)", field="reselect_growth")


@dataclass(frozen=True)
class LiveDecision:
    """A decision with what its policy knew: the probability it gave every allowed model
    (``probabilities``), the chosen model's (``propensity``), the greedy choice and whether it explored."""

    decision: Decision
    propensity: float
    probabilities: dict[str, float]
    greedy: str
    explored: bool

    @property
    def model(self) -> str:
        return self.decision.model


@dataclass(frozen=True)
class Judged:
    """The judged outcome of a served decision: its query (and tags, when the decision's are at hand),
    the model, the outcome, the propensity of that choice and the source that reported it."""

    query: str
    model: str
    outcome: Outcome
    propensity: float = 1.0
    source: str | None = None
    tags: tuple[str, ...] | None = None
    output_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise DataError(
                f"outcome must be one of {', '.join(OUTCOMES)}, got {self.outcome!r}", field="outcome"
            )
        if not (0.0 < self.propensity <= 1.0):
            raise DataError(f"propensity must be in (0, 1], got {self.propensity!r}", field="propensity")

    def record(self) -> HistoryRecord:
        return HistoryRecord(
            query_id=query_id(self.query),
            query=self.query,
            model=self.model,
            outcome=self.outcome,
            output_tokens=self.output_tokens,
        )


#: A judged outcome and the weight it is learned with (negative: the retraction of one learned before).
WeightedOutcome = tuple[Judged, float]


@dataclass
class Spend:
    """Expected dollars a budget key spent and the extra its explorations cost."""

    spent: float = 0.0
    exploration: float = 0.0

    def allowance(self, share: float) -> float:
        return share * self.spent - self.exploration


@dataclass
class LearnStats:
    """What the learner did with feedback: outcomes learned, refused by the per-source bound, and
    re-selections of the settings."""

    learned: int = 0
    refused: int = 0
    reselections: int = 0
    explored: int = 0
    decisions: int = 0
    last_selection: dict[str, Any] | None = field(default=None, repr=False)


class LiveLearner:
    """One learning router for live traffic (see the module docstring): :meth:`decide_batch` /
    :meth:`decide` with exploration, :meth:`learn` judged outcomes. Routers stay immutable: learning swaps in
    a new model with one assignment, so a decision routes on the old model or the new one.

    ``history``: the records the router was fitted on (needed to re-select the settings; without it,
    re-selection uses only what the learner learned). ``rng``, ``clock``: injectable randomness and time."""

    def __init__(
        self,
        router: TagRouter,
        policy: LivePolicy | None = None,
        *,
        history: History | Sequence[HistoryRecord] | None = None,
        rng: np.random.Generator | None = None,
        clock: Callable[[], float] = time.time,
        background: bool = False,
    ) -> None:
        self.model: RoutingModel = router.model
        self.decider: Decider = router.decider
        self.policy = policy or LivePolicy()
        self.rng = rng or np.random.default_rng()
        self.clock = clock
        self.background = background
        self.stats = LearnStats()
        self._budgets: dict[str, Spend] = defaultdict(Spend)
        self._weights: dict[str, tuple[float, int]] = {}  # per model: sum and count of raw weights
        self._by_source: dict[str, deque[tuple[float, float]]] = defaultdict(deque)
        self._history: list[History] = [] if history is None else [as_history(history)]
        self._queries: set[str] = set(self._history[0].query_id) if history is not None else set()
        self._selected_at = len(self._queries)
        self._lock = threading.RLock()  # decisions' random draws and budgets; learning
        self._selecting: threading.Thread | None = None

    # ---- the current router ---------------------------------------------------------------------------
    @property
    def router(self) -> TagRouter:
        """The current model under the learner's default policy."""
        return TagRouter(self.model, self.decider)

    # ---- deciding -------------------------------------------------------------------------------------
    def decide(self, query: str, needs: Needs | None = None, *, explore: bool = True) -> LiveDecision:
        """Decide for one query (see :meth:`decide_batch`)."""
        return self.decide_batch([query], None if needs is None else [needs], explore=explore)[0]

    def decide_batch(
        self,
        queries: Sequence[str],
        needs: Sequence[Needs] | None = None,
        earlier: Sequence[str | None] | None = None,
        conversation: Conversation | None = None,
        *,
        fits: Allowed | None = None,
        decider: Decider | None = None,
        budget_key: str = "default",
        explore: bool | Sequence[bool] = True,
    ) -> list[LiveDecision]:
        """Decisions for ``queries`` under ``decider`` (default: the learner's), exploring where ``explore``
        allows (one flag for all or one per query) within the budget of ``budget_key``; ``needs`` (or
        ``fits``), ``earlier`` and ``conversation`` as in :meth:`TagRouter.route_batch`. A draw only
        chooses among the models the constraints allow."""
        model, decider = self.model, decider or self.decider
        costs = model.expected_costs(list(queries))
        if needs is not None:
            if fits is not None:
                raise TypeError("give needs or fits, not both")
            fits = allowed(model.catalog, needs, costs)
        greedy = TagRouter(model, decider).route_batch(queries, None, earlier, conversation, fits=fits)
        flags = [explore] * len(greedy) if isinstance(explore, bool) else list(explore)
        if len(flags) != len(greedy):
            raise DataError(f"got {len(flags)} explore flags for {len(greedy)} queries", field="explore")
        share = self.policy.budget_share
        mask = fits.mask if fits is not None else None
        out = []
        with self._lock:
            spend = self._budgets[budget_key]
            for i, decision in enumerate(greedy):
                index = model.models.index(decision.model)
                if not (flags[i] and share > 0 and model.samples):
                    spend.spent += float(costs[i, index])
                    out.append(LiveDecision(decision, 1.0, {decision.model: 1.0}, decision.model, False))
                    continue
                out.append(self._explore(model, decider, decision, costs[i], mask, i, spend))
            self.stats.decisions += len(out)
            self.stats.explored += sum(d.explored for d in out)
        return out

    def _explore(
        self,
        model: RoutingModel,
        decider: Decider,
        decision: Decision,
        costs: np.ndarray,
        fits: np.ndarray | None,
        row: int,
        spend: Spend,
    ) -> LiveDecision:
        """Thompson sampling for one decided query: the greedy decision's scores moved by posterior noise."""
        names = model.models
        greedy = names.index(decision.model)
        draws = model.sample_scores(decision.tags, self.rng, self.policy.draws)
        scores = np.array([decision.scores[m] for m in names])
        sampled = scores[None, :] + draws - draws.mean(axis=0, keepdims=True)
        mask = np.ones(len(names), dtype=bool) if fits is None else fits[row].copy()
        extra = np.maximum(costs - costs[greedy], 0.0)
        mask &= extra <= max(spend.allowance(self.policy.budget_share), 0.0)
        mask[greedy] = True
        choices = decider.choose(sampled, costs, np.broadcast_to(mask, sampled.shape))
        counts = np.bincount(choices, minlength=len(names))
        chosen = int(choices[self.rng.integers(len(choices))])
        probabilities = {names[j]: counts[j] / len(choices) for j in np.flatnonzero(counts)}
        spend.spent += float(costs[chosen])
        explored = chosen != greedy
        if explored:
            spend.exploration += float(extra[chosen])
            ranking = [names[chosen], *(m for m in decision.ranking if m != names[chosen])]
            decision = replace(
                decision,
                model=names[chosen],
                ranking=ranking,
                reason=f"explored {names[chosen]} (probability {probabilities[names[chosen]]:.3f}; "
                f"the greedy choice was {names[greedy]}: {decision.reason})",
            )
        return LiveDecision(decision, probabilities[names[chosen]], probabilities, names[greedy], explored)

    def budget(self, budget_key: str = "default") -> Spend:
        """The spend of a budget key so far (a copy)."""
        with self._lock:
            return replace(self._budgets[budget_key])

    # ---- learning -------------------------------------------------------------------------------------
    def weigh(self, judged: Judged, now: float | None = None) -> float:
        """The weight ``judged`` is learned with (0: refused by the per-source bound), updating the
        per-model normalisation and the source's window: what the replica that receives a feedback stores,
        so that every replica learns the same weight (:meth:`learn_weighted`)."""
        now = self.clock() if now is None else now
        raw = min(1.0 / judged.propensity, self.policy.max_weight)
        with self._lock:
            total, count = self._weights.get(judged.model, (0.0, 0))
            total, count = total + raw, count + 1
            weight = raw / (total / count)
            bound = self.policy.per_source_weight
            if judged.source is not None and bound is not None:
                window = self._by_source[judged.source]
                while window and window[0][0] <= now - self.policy.window_s:
                    window.popleft()
                if sum(w for _, w in window) + weight > bound:
                    self.stats.refused += 1
                    return 0.0
                window.append((now, weight))
            self._weights[judged.model] = (total, count)
        return weight

    def learn(self, judged: Sequence[Judged], now: float | None = None) -> list[float]:
        """Learn judged outcomes (see the module docstring); returns the weight each was learned with
        (0: refused)."""
        weights = [self.weigh(j, now) for j in judged]
        self.learn_weighted(judged, weights)
        return weights

    def learn_weighted(self, judged: Sequence[Judged], weights: Sequence[float]) -> None:
        """Learn outcomes with weights already decided (by :meth:`weigh`, here or on another replica); a
        negative weight retracts an outcome learned before (a corrected verdict)."""
        kept = [(j, w) for j, w in zip(judged, weights, strict=True) if w != 0]
        if not kept:
            return
        records = [j.record() for j, _ in kept]
        history = History.from_records(records)
        with self._lock:
            model = self.model
            untagged = [i for i, (j, _) in enumerate(kept) if j.tags is None]
            tagged = model.tagger.tag([kept[i][0].query for i in untagged]) if untagged else []
            tags = [list(j.tags) if j.tags is not None else [] for j, _ in kept]
            for i, found in zip(untagged, tagged, strict=True):
                tags[i] = found
            plain = all(w == 1.0 for _, w in kept)
            self.model = model.learned_tagged(tags, history, None if plain else [w for _, w in kept])
            if self.policy.reselect_growth is not None:  # kept only to re-select the settings
                self._history.append(history)
                self._queries.update(history.query_id)
            self.stats.learned += len(records)
        self._maybe_reselect()

    # ---- settings that follow the evidence --------------------------------------------------------------
    def _maybe_reselect(self) -> None:
        growth = self.policy.reselect_growth
        if growth is None:
            return
        with self._lock:
            queries = len(self._queries)
            if queries < growth * max(self._selected_at, 1) or self._selecting is not None:
                return
            self._selected_at = queries
            self._history = [History.concatenated(self._history)]
            history = self._history[0]
            if self.background:
                self._selecting = threading.Thread(
                    target=self._reselect, args=(history,), name="tagrouter-reselect", daemon=True
                )
                self._selecting.start()
                return
        self._reselect(history)

    def _reselect(self, history: History) -> None:
        try:
            chosen = select_settings(self.model, history)
            if chosen is not None:
                scorer, point, report, residual, conversation = chosen
                with self._lock:
                    self.model = self.model.with_scorer(scorer, report, residual, conversation)
                    self.decider = for_models(Decider(point.rule, point.knob), len(self.model.models))
                    self.stats.reselections += 1
                    self.stats.last_selection = report
        finally:
            self._selecting = None

    def wait_selection(self, timeout_s: float = 600.0) -> None:
        """Wait for a background re-selection to finish (tests, orderly shutdown)."""
        running = self._selecting
        if running is not None:
            running.join(timeout_s)

    # ---- a reload's successor --------------------------------------------------------------------------
    def carry_from(self, other: LiveLearner) -> None:
        """Continue ``other``'s bookkeeping (a gateway reload's new learner replaces the old one): its
        budget keys' spend, the per-model normalisation of new weights, the per-source windows and the
        counts, so that neither the exploration budget nor a source's bound restarts at zero."""
        with other._lock:
            budgets = {key: replace(spend) for key, spend in other._budgets.items()}
            weights = dict(other._weights)
            windows = {source: deque(window) for source, window in other._by_source.items()}
            stats = replace(other.stats, learned=self.stats.learned)
        with self._lock:
            self._budgets.update(budgets)
            self._weights = weights
            self._by_source.update(windows)
            self.stats = stats

    # ---- new models -----------------------------------------------------------------------------------
    def with_catalog(self, catalog: Catalog) -> None:
        """Route to the models of ``catalog`` from now on: new ones start with no history (see
        :meth:`RoutingModel.with_models`), others take their new cards. The default decider is kept; a
        two-model ``gap`` rule (θ) that now has more models becomes ``within`` (max(θ, 0)), which makes
        the same choices between two models."""
        with self._lock:
            decider = for_models(self.decider, len(catalog.names))
            self.model = self.model.with_models(catalog)
            self.decider = decider


def for_models(decider: Decider, n_models: int) -> Decider:
    """``decider`` for ``n_models`` models: a ``gap`` rule (two models only) becomes ``within`` with
    θ = max(θ, 0), which makes the same choices between two models."""
    if decider.rule is Rule.GAP and n_models != 2:
        decider = Decider(Rule.WITHIN, max(decider.knob, 0.0))
    decider.check(n_models)
    return decider


#: Fewest queries with an outcome for every tuned model that a re-selection needs (two per inner fold).
MIN_SELECTION_QUERIES = 10


def select_settings(
    model: RoutingModel, history: History
) -> tuple[Any, Any, dict[str, Any], EmbeddingResidual | None, Conversation | None] | None:
    """The scorer's settings, operating point, report, embedding residual (None: the tags alone route
    better) and conversation mode (None: the history has no conversations) chosen by the fit's inner cross-validation on ``history``, as a fit chooses them (bandit
    records add to the inner tables; the curves, and the residual, use the queries that have an outcome
    for every tuned model). Models judged on fewer than half of the queries that have several models'
    outcomes (e.g. a new model) are left out of the curves, not out of the tables, and get no residual
    correction. None when fewer than :data:`MIN_SELECTION_QUERIES` queries could score the curves."""
    from tagrouter.tuning import TuningSample, tune_model

    judged: dict[str, set[str]] = defaultdict(set)
    for qid, name in zip(history.query_id, history.model, strict=True):
        judged[qid].add(name)
    several = [names for names in judged.values() if len(names) > 1]
    tuned = [m for m in model.models if sum(m in names for names in several) * 2 >= len(several)]
    complete = sum(all(m in names for m in tuned) for names in several)
    if len(tuned) < 2 or complete < MIN_SELECTION_QUERIES:
        return None
    sub = model
    if tuned != model.models:
        cards = Catalog(models=[model.catalog[m] for m in tuned])
        sub = RoutingModel.build(model.tagger, model.table, cards, model.scorer, model.output_tokens)
    scorer, point, report = tune_model(sub, TuningSample.of(history, sub.tagger))
    residual = report.residual
    if residual is not None and tuned != model.models:  # untuned models: no correction
        columns = [tuned.index(m) if m in tuned else -1 for m in model.models]
        weights = np.zeros((residual.weights.shape[0], len(columns)))
        intercept = np.zeros(len(columns))
        for j, c in enumerate(columns):
            if c >= 0:
                weights[:, j], intercept[j] = residual.weights[:, c], residual.intercept[c]
        residual = EmbeddingResidual(weights, intercept)
    return scorer, point, report.to_dict(), residual, report.conversation
