"""TagRouter = tagger + tag-score table + scorer + decider, over a catalogue of priced models."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tagrouter.catalog import Catalog
from tagrouter.deciding import Calibration, Decider, Rule, calibrate
from tagrouter.errors import DataError
from tagrouter.records import HistoryRecord
from tagrouter.scoring import Scorer, SmoothedScorer, TagTable, aggregate
from tagrouter.tagging.base import Tagger

#: Output tokens assumed for a model with no token counts in the history.
DEFAULT_OUTPUT_TOKENS = 300.0
#: Characters per input token, to estimate a new query's input tokens (cl100k averages about 4 on English).
CHARS_PER_TOKEN = 4.0

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class _RoutingState:
    """Everything routing reads, replaced as a whole by ``update`` so that concurrent routing always sees
    one consistent version."""

    models: list[str]
    tag_index: dict[str, int]
    values: np.ndarray  # (tags × routable models)
    empty: np.ndarray  # scores of a query with no known tag
    mean: bool  # probabilities average over tags, paper scores add up
    input_price: np.ndarray  # dollars per input token
    output_cost: np.ndarray  # dollars of a mean-length answer


@dataclass(frozen=True)
class Decision:
    """The router's choice for one query, with everything needed to explain it."""

    query: str
    model: str
    tags: list[str]
    scores: dict[str, float]
    expected_costs: dict[str, float]
    ranking: list[str]
    rule: str
    knob: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "tags": self.tags,
            "scores": {k: round(v, 6) for k, v in self.scores.items()},
            "expected_cost_usd": {k: round(v, 8) for k, v in self.expected_costs.items()},
            "ranking": self.ranking,
            "rule": self.rule,
            "threshold": self.knob,
            "reason": self.reason,
        }


@dataclass
class TagRouter:
    """Routes queries to the model of ``catalog`` that the tag scores and prices favour.

    Build one with :meth:`fit`; ``route`` / ``route_batch`` decide; ``update`` adds judged records;
    ``save`` / ``load`` persist it as a directory.
    """

    tagger: Tagger
    table: TagTable
    catalog: Catalog
    scorer: Scorer = field(default_factory=SmoothedScorer)
    decider: Decider = field(default_factory=Decider)
    #: per model: [sum of output tokens, number of records with a count], for expected costs
    output_token_stats: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [m for m in self.catalog.names if m not in self.table.model_index]
        if missing:
            raise DataError(
                f"the history has no record of catalogue model(s) {', '.join(missing)}: a router can only "
                "route to models it has judged history for"
            )
        if self.decider.rule == "gap" and len(self.catalog.names) != 2:
            raise ValueError(
                "the 'gap' rule needs a catalogue of exactly two models; use 'within' or 'utility'"
            )
        self._refresh()

    # ---- building -------------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        records: Sequence[HistoryRecord],
        catalog: Catalog,
        *,
        tagger: Tagger | None = None,
        scorer: Scorer | None = None,
        decider: Decider | None = None,
        progress: Progress | None = None,
    ) -> TagRouter:
        """Fit a router on judged history.

        Without ``tagger``, the embedded default is built from the history's queries (offline teacher ->
        vocabulary -> student). The history may hold models outside the catalogue: their outcomes feed
        the scorer's difficulty prior, but they are never chosen.
        """
        if not records:
            raise DataError("the history is empty: a router needs judged records to fit")
        if tagger is None:
            from tagrouter.tagging.embedded import EmbeddedTagger

            tagger = EmbeddedTagger.fit(list(_unique_queries(records).values()), progress=progress)
        if decider is None:
            decider = Decider(rule="gap") if len(catalog.names) == 2 else Decider(rule="utility")
        table, token_stats = TagTable(), {}
        _add_records(table, token_stats, tagger, records, progress)
        return cls(tagger, table, catalog, scorer or SmoothedScorer(), decider, token_stats)

    def update(self, records: Sequence[HistoryRecord], progress: Progress | None = None) -> None:
        """Add judged records: the table becomes exactly the one a fit on all records (same tagger) gives.

        The new table is built aside and swapped in at once, so routing in other threads meanwhile uses
        the previous version, never a half-updated one.
        """
        if records:
            table, token_stats = copy.deepcopy(self.table), copy.deepcopy(self.output_token_stats)
            _add_records(table, token_stats, self.tagger, records, progress)
            self.table, self.output_token_stats = table, token_stats
            self._refresh()

    def _refresh(self) -> None:
        """Recompute what routing reads on every query: tag values of routable models and their prices."""
        models = self.catalog.names
        columns = [self.table.model_index[m] for m in models]
        cards = [self.catalog[m] for m in models]
        self._state = _RoutingState(
            models=models,
            tag_index=self.table.tag_index,
            values=self.scorer.tag_values(self.table)[:, columns],
            empty=self.scorer.empty_scores(self.table)[columns],
            mean=self.scorer.averages,
            input_price=np.array([c.input_usd_per_1m for c in cards]) / 1e6,
            output_cost=np.array([c.output_usd_per_1m * self.mean_output_tokens(c.name) for c in cards])
            / 1e6,
        )

    def mean_output_tokens(self, model: str) -> float:
        """Mean output tokens of ``model`` in the history (``DEFAULT_OUTPUT_TOKENS`` if it has none)."""
        total, count = self.output_token_stats.get(model, (0.0, 0))
        return total / count if count else DEFAULT_OUTPUT_TOKENS

    # ---- routing --------------------------------------------------------------------------------------
    @property
    def models(self) -> list[str]:
        """The routable models, in catalogue order (the columns of :meth:`score_batch`)."""
        return list(self._state.models)

    def expected_costs(self, queries: Sequence[str]) -> np.ndarray:
        """Expected dollars per (query, model): estimated input tokens × input price + the model's mean
        output tokens in the history × output price."""
        return _expected_costs(self._state, queries)

    def score_batch(self, queries: Sequence[str]) -> tuple[list[list[str]], np.ndarray]:
        """Tags of each query and the (n × models) score matrix."""
        return _score(self._state, self.tagger.tag(list(queries)))

    def route_batch(self, queries: Sequence[str]) -> list[Decision]:
        """Decide for many queries in one call (much faster per query than calling :meth:`route`)."""
        if isinstance(queries, str):
            raise TypeError("route_batch takes a list of queries; use route() for one query")
        state, decider = self._state, self.decider
        tag_lists, scores = _score(state, self.tagger.tag(list(queries)))
        costs = _expected_costs(state, queries)
        ranking = decider.rank(scores, costs)
        models = state.models
        decisions = []
        for i, query in enumerate(queries):
            order = [models[j] for j in ranking[i]]
            decisions.append(
                Decision(
                    query=query,
                    model=order[0],
                    tags=tag_lists[i],
                    scores=dict(zip(models, scores[i].tolist(), strict=True)),
                    expected_costs=dict(zip(models, costs[i].tolist(), strict=True)),
                    ranking=order,
                    rule=decider.rule,
                    knob=decider.knob,
                    reason=_reason(models, decider, ranking[i][0], scores[i], costs[i]),
                )
            )
        return decisions

    def route(self, query: str) -> Decision:
        """Decide for one query."""
        return self.route_batch([query])[0]

    # ---- calibration ----------------------------------------------------------------------------------
    def calibrate(
        self,
        queries: Sequence[str],
        *,
        strong_share: float | None = None,
        mean_cost: float | None = None,
        strong_model: str | None = None,
    ) -> Calibration:
        """Set the decider's knob so that, on ``queries``, ``strong_share`` of traffic goes to
        ``strong_model`` (default: the dearest) or the mean expected cost per query is ``mean_cost``."""
        _, scores = self.score_batch(queries)
        strong_index = self._state.models.index(strong_model) if strong_model else None
        result = calibrate(
            scores,
            self.expected_costs(queries),
            self.decider.rule,
            strong_share=strong_share,
            mean_cost=mean_cost,
            strong_index=strong_index,
        )
        self.decider = self.decider.with_knob(result.knob)
        return result

    def with_decider(self, rule: Rule, knob: float = 0.0) -> TagRouter:
        """This router with another decision rule (shares the tagger and the table)."""
        return TagRouter(
            self.tagger, self.table, self.catalog, self.scorer, Decider(rule, knob), self.output_token_stats
        )

    # ---- persistence ----------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        """Save as a directory with a versioned manifest, atomically (see :mod:`tagrouter.artifact`)."""
        from tagrouter.artifact import save_router

        save_router(self, Path(folder))

    @classmethod
    def load(cls, folder: str | Path) -> TagRouter:
        """Load a router saved by :meth:`save`; a damaged or incompatible one raises ``ArtifactError``."""
        from tagrouter.artifact import load_router

        return load_router(Path(folder))


def _score(state: _RoutingState, tag_lists: list[list[str]]) -> tuple[list[list[str]], np.ndarray]:
    """Scores of tagged queries from the routing state's tag values (see :func:`scoring.aggregate`)."""
    index = state.tag_index
    rows = [[index[t] for t in tags if t in index] for tags in tag_lists]
    return tag_lists, aggregate(state.values, rows, mean=state.mean, empty=state.empty)


def _expected_costs(state: _RoutingState, queries: Sequence[str]) -> np.ndarray:
    input_tokens = np.fromiter((len(q) / CHARS_PER_TOKEN for q in queries), dtype=float, count=len(queries))
    return input_tokens[:, None] * state.input_price[None, :] + state.output_cost[None, :]


def _reason(models: list[str], decider: Decider, chosen: int, scores: np.ndarray, costs: np.ndarray) -> str:
    """One line saying why model ``chosen`` won."""
    best = int(scores.argmax())
    name, knob = models[chosen], decider.knob
    if best == chosen:
        return f"{name} has the best score ({scores[chosen]:.3f})"
    if decider.rule == "utility":
        return (
            f"{name} scores {scores[chosen]:.3f} vs {scores[best]:.3f} for {models[best]}, "
            f"but costs ${costs[chosen]:.6f} vs ${costs[best]:.6f}: best score − {knob:g} × cost"
        )
    return (
        f"{name} scores {scores[chosen]:.3f}, within θ={knob:g} of the best "
        f"({models[best]}, {scores[best]:.3f}), and is cheaper"
    )


def _unique_queries(records: Sequence[HistoryRecord]) -> dict[str, str]:
    return {r.query_id: r.query for r in records}


def _add_records(
    table: TagTable,
    token_stats: dict[str, list[float]],
    tagger: Tagger,
    records: Sequence[HistoryRecord],
    progress: Progress | None,
) -> None:
    """Tag each distinct query once, then add every record to the table and to the token statistics."""
    queries = _unique_queries(records)
    ids = list(queries)
    tags_of = dict(zip(ids, _tag_in_batches(tagger, [queries[i] for i in ids], progress), strict=True))
    table.add(
        [tags_of[r.query_id] for r in records], [r.model for r in records], [r.outcome for r in records]
    )
    for r in records:
        if r.output_tokens is not None:
            stats = token_stats.setdefault(r.model, [0.0, 0])
            stats[0] += r.output_tokens
            stats[1] += 1


def _tag_in_batches(
    tagger: Tagger, texts: list[str], progress: Progress | None, batch_size: int = 256
) -> list[list[str]]:
    out: list[list[str]] = []
    for start in range(0, len(texts), batch_size):
        out.extend(tagger.tag(texts[start : start + batch_size]))
        if progress:
            progress("tagging history", min(start + batch_size, len(texts)), len(texts))
    return out
