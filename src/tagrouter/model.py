"""The fitted routing model: tagger, tag table, scorer and the per-tag values routing reads.

A :class:`RoutingModel` is immutable. Learning new records (:meth:`RoutingModel.updated`) gives a new
model and costs in proportion to the tags those records touch: the table and the values are stored in
blocks of rows (:class:`~tagrouter.arrays.RowBlocks`), and only the touched rows are recounted and rescored.

A tag's value depends on its own row of counts and on a few table-wide statistics of the scorer (e.g. each
model's overall accept rate; :meth:`~tagrouter.scoring.TagScorer.table_stats`). Between two refreshes,
rows are rescored with the statistics of the last refresh; a refresh (a full rescoring, in proportion to the
table) happens when the records added since the last one exceed :data:`REFRESH_SHARE` of the records the
statistics were computed on, so its cost per record stays bounded. :meth:`RoutingModel.refreshed` forces
one: a refreshed model scores exactly like a refit on all records with the same tagger.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np

from tagrouter.arrays import RowBlocks
from tagrouter.catalog import Catalog
from tagrouter.conversation import FALLBACK, Conversation, joined
from tagrouter.errors import DataError
from tagrouter.records import History, HistoryRecord, as_history
from tagrouter.residual import EmbeddingResidual, corrected, embed
from tagrouter.scoring import Scorer, SmoothedScorer, TagTable, combine
from tagrouter.tagging.base import Tagger

#: Output tokens assumed for a model with no token counts in the history.
DEFAULT_OUTPUT_TOKENS = 300.0
#: Characters per input token, to estimate a new query's input tokens (cl100k averages about 4 on English).
CHARS_PER_TOKEN = 4.0
#: A full rescoring happens once the records added since the last exceed this share of the records then.
REFRESH_SHARE = 0.01
#: Distinct queries tagged per tagger call while fitting.
TAG_BATCH = 256

Progress = Callable[[str, int, int], None]
#: Per model: (sum of output tokens, number of records with a count).
TokenStats = Mapping[str, tuple[float, int]]


@dataclass(frozen=True, eq=False)
class RoutingModel:
    """Everything fitted: the tagger, the tag table, the scorer with the values it gives every tag for the
    routable models, and each model's mean output length. Build with :meth:`build` (or
    ``TagRouter.fit``); never changed in place."""

    tagger: Tagger
    table: TagTable
    catalog: Catalog
    scorer: Scorer
    output_tokens: TokenStats
    values: RowBlocks  # (tags × routable models), catalogue order
    stats: Mapping[str, np.ndarray]  # the scorer's table statistics at the last refresh
    refreshed_at: int  # records in the table at the last refresh
    _columns: np.ndarray = field(repr=False)
    #: how the fit chose the scorer's settings (:class:`~tagrouter.tuning.TuningReport`), when it did
    tuning: Mapping[str, Any] | None = None
    #: the embedding correction of the scores, when the fit chose one (:mod:`tagrouter.residual`)
    residual: EmbeddingResidual | None = None
    #: how earlier turns count, when the fit chose it (:mod:`tagrouter.conversation`; None: the fallback)
    conversation: Conversation | None = None

    # ---- building ----------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        tagger: Tagger,
        table: TagTable,
        catalog: Catalog,
        scorer: Scorer | None = None,
        output_tokens: TokenStats | None = None,
        tuning: Mapping[str, Any] | None = None,
        residual: EmbeddingResidual | None = None,
        conversation: Conversation | None = None,
    ) -> RoutingModel:
        """Score every tag of ``table`` for the catalogue's models (which must all be in the table)."""
        missing = [m for m in catalog.names if m not in table.model_index]
        if missing:
            raise DataError(
                f"the history has no record of catalogue model(s) {', '.join(missing)}: a router can only "
                "route to models it has judged history for"
            )
        scorer = scorer or SmoothedScorer()
        columns = np.array([table.model_index[m] for m in catalog.names], dtype=np.intp)
        stats = scorer.table_stats(table)
        values = RowBlocks.from_array(scorer.row_values(table.counts, stats)[:, columns])
        return cls(
            tagger=tagger,
            table=table,
            catalog=catalog,
            scorer=scorer,
            output_tokens=MappingProxyType(dict(output_tokens or {})),
            values=values,
            stats=MappingProxyType(stats),
            refreshed_at=table.records,
            _columns=columns,
            tuning=tuning,
            residual=residual,
            conversation=conversation,
        )

    def updated(
        self, history: History | Sequence[HistoryRecord], weights: Sequence[float] | np.ndarray | None = None
    ) -> RoutingModel:
        """This model with ``history`` learned: the table becomes exactly that of a fit on all records with
        this tagger; only the touched rows are rescored (see the module docstring). ``weights`` (one per
        record) count each record that many times (see :meth:`TagTable.count`)."""
        history = as_history(history)
        if not len(history):
            return self
        tags = tag_history(self.tagger, history, None)
        return self.learned_tagged(tags, history, weights)

    def learned_tagged(
        self,
        tag_lists: Sequence[Sequence[str]],
        history: History,
        weights: Sequence[float] | np.ndarray | None = None,
    ) -> RoutingModel:
        """:meth:`updated` for records whose queries are already tagged with this tagger (``tag_lists``,
        one per record), so that a decision's tags need not be computed again when its outcome arrives."""
        added = TagTable.count(tag_lists, history.model, history.outcome, weights)
        return self.learned(added, token_stats(history))

    def learned(self, added: TagTable, output_tokens: TokenStats) -> RoutingModel:
        """This model with the counts of ``added`` (a table counted with this tagger, e.g. partial tables
        merged by an engine) and their output-token statistics learned; see :meth:`updated`."""
        table = self.table.merged(added)
        tokens = dict(self.output_tokens)
        for model, (total, count) in output_tokens.items():
            before = tokens.get(model, (0.0, 0))
            tokens[model] = (before[0] + total, before[1] + count)
        if table.records - self.refreshed_at > REFRESH_SHARE * self.refreshed_at or len(table.models) != len(
            self.table.models
        ):
            return RoutingModel.build(
                self.tagger,
                table,
                self.catalog,
                self.scorer,
                tokens,
                self.tuning,
                self.residual,
                self.conversation,
            )
        rows = np.fromiter((table.tag_index[t] for t in added.tags), dtype=np.intp, count=len(added.tags))
        fresh = self.scorer.row_values(table.rows(rows), self.stats)[:, self._columns]
        return replace(
            self,
            table=table,
            output_tokens=MappingProxyType(tokens),
            values=self.values.with_rows(rows, fresh),
        )

    def refreshed(self) -> RoutingModel:
        """This model rescored in full (exactly what a fit with this tagger on the same records gives)."""
        return RoutingModel.build(
            self.tagger,
            self.table,
            self.catalog,
            self.scorer,
            self.output_tokens,
            self.tuning,
            self.residual,
            self.conversation,
        )

    def with_scorer(
        self,
        scorer: Scorer,
        tuning: Mapping[str, Any] | None = None,
        residual: EmbeddingResidual | None = None,
        conversation: Conversation | None = None,
    ) -> RoutingModel:
        """This model scored by another scorer (same tagger and table), corrected by ``residual`` if given,
        counting earlier turns as ``conversation`` says (None: as this model does); ``tuning`` says how
        they were chosen."""
        return RoutingModel.build(
            self.tagger,
            self.table,
            self.catalog,
            scorer,
            self.output_tokens,
            tuning,
            residual,
            conversation or self.conversation,
        )

    def with_catalog(self, catalog: Catalog) -> RoutingModel:
        """This model with another card for each of its models (new prices, capabilities or endpoints)."""
        if catalog.names != self.catalog.names:
            raise DataError(
                f"the new catalogue must list the same models in the same order ({', '.join(self.models)}), "
                f"got {', '.join(catalog.names)}",
                field="models",
            )
        return replace(self, catalog=catalog)

    def with_models(self, catalog: Catalog) -> RoutingModel:
        """This model routing to the models of ``catalog``, which may add models with no history yet (they
        start at the prior: an overall accept rate of 1/2 and no tag evidence) and give existing ones new
        cards; models it drops are kept in the table as context."""
        table = self.table.with_models(catalog.names)
        return RoutingModel.build(
            self.tagger,
            table,
            catalog,
            self.scorer,
            self.output_tokens,
            self.tuning,
            conversation=self.conversation,
        )

    # ---- scoring -----------------------------------------------------------------------------------
    @property
    def models(self) -> list[str]:
        """The routable models, in catalogue order (the columns of :meth:`score`)."""
        return self.catalog.names

    def score(
        self,
        queries: Sequence[str],
        earlier: Sequence[str | None] | None = None,
        conversation: Conversation | None = None,
    ) -> tuple[list[list[str]], np.ndarray]:
        """Tags of each query and the (queries × models) score matrix: the tag scores, plus the embedding
        correction where the model has one (see :meth:`score_parts`)."""
        tag_lists, scores, correction = self.score_parts(queries, earlier, conversation)
        return tag_lists, scores if correction is None else corrected(scores, correction)

    @property
    def conversation_rule(self) -> Conversation:
        """How this model counts earlier turns: the fit's choice, else the measured fallback."""
        return self.conversation or FALLBACK

    def score_parts(
        self,
        queries: Sequence[str],
        earlier: Sequence[str | None] | None = None,
        conversation: Conversation | None = None,
    ) -> tuple[list[list[str]], np.ndarray, np.ndarray | None]:
        """Tags of each query, its tag scores and the embedding correction (None without a residual).

        ``earlier[i]``: the text of the conversation's user turns before query i (None or empty: none);
        a query with one is scored as ``conversation`` says (default: :attr:`conversation_rule`; see
        :mod:`tagrouter.conversation`). The tags and the embedding correction are always the query's own."""
        correction = None if self.residual is None else self.residual.correction(embed(self.tagger, queries))
        tag_lists = self.tagger.tag(list(queries))
        scores = self.score_tags(tag_lists)
        rule = conversation or self.conversation_rule
        rows = [i for i, text in enumerate(earlier or ()) if text] if rule.mode != "last" else []
        if rule.mode == "weighted" and rows:
            before = self.score_tags(self.tagger.tag([earlier[i] for i in rows]))
            scores[rows] = (1.0 - rule.weight) * scores[rows] + rule.weight * before
        elif rule.mode == "concatenated" and rows:
            scores[rows] = self.score_tags(self.tagger.tag([joined(earlier[i], queries[i]) for i in rows]))
        return tag_lists, scores, correction

    def score_tags(self, tag_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """The (queries × models) scores of queries tagged ``tag_lists``."""
        rows = self.table.tag_rows(tag_lists)
        lengths = np.fromiter((len(r) for r in rows), dtype=np.intp, count=len(rows))
        flat = np.concatenate(rows) if rows else np.zeros(0, dtype=np.intp)
        empty = self.scorer.empty_scores(self.stats)[self._columns]
        return combine(self.values.gather(flat), lengths, mean=self.scorer.averages, empty=empty)

    @property
    def samples(self) -> bool:
        """Whether the scorer has a posterior to sample (:meth:`sample_scores`; the smoothed scorer)."""
        return isinstance(self.scorer, SmoothedScorer)

    def sample_scores(self, tags: Sequence[str], rng: np.random.Generator, draws: int) -> np.ndarray:
        """``draws`` samples (draws × models) from the posterior of the scores of a query tagged ``tags``
        (see :meth:`SmoothedScorer.sample_values`); their mean is close to :meth:`score_tags`'s."""
        if not isinstance(self.scorer, SmoothedScorer):
            raise DataError(f"the {self.scorer.kind} scorer has no posterior to sample", field="scorer")
        rows = self.table.tag_rows([tags])[0]
        values, rates = self.scorer.sample_values(
            self.table.rows(rows), self.table.model_counts, dict(self.stats), rng, draws
        )
        scores = values.mean(axis=1) if len(rows) else rates
        return scores[:, self._columns]

    def mean_output_tokens(self, model: str) -> float:
        """Mean output tokens of ``model`` in the history (``DEFAULT_OUTPUT_TOKENS`` if it has none)."""
        mean = mean_output_tokens(self.output_tokens, model)
        return DEFAULT_OUTPUT_TOKENS if mean is None else mean

    def expected_costs(self, queries: Sequence[str]) -> np.ndarray:
        """Expected dollars per (query, model): estimated input tokens (:func:`estimated_input_tokens`)
        × input price + the model's mean output tokens in the history × output price."""
        cards = [self.catalog[m] for m in self.models]
        input_price = np.array([c.input_usd_per_1m for c in cards]) / 1e6
        output_cost = np.array([c.output_usd_per_1m * self.mean_output_tokens(c.name) for c in cards]) / 1e6
        tokens = np.fromiter((estimated_input_tokens(q) for q in queries), dtype=float, count=len(queries))
        return tokens[:, None] * input_price[None, :] + output_cost[None, :]


def tag_history(tagger: Tagger, history: History, progress: Progress | None) -> list[list[str]]:
    """The tags of every record's query: each distinct query is tagged once, in batches."""
    queries = history.unique_queries()
    ids = list(queries)
    texts = [queries[i] for i in ids]
    tags: list[list[str]] = []
    for start in range(0, len(texts), TAG_BATCH):
        tags.extend(tagger.tag(texts[start : start + TAG_BATCH]))
        if progress:
            progress("tagging history", min(start + TAG_BATCH, len(texts)), len(texts))
    tags_of = dict(zip(ids, tags, strict=True))
    return [tags_of[q] for q in history.query_id]


def estimated_input_tokens(query: str) -> float:
    """Input tokens of a query whose count is unknown: its characters / :data:`CHARS_PER_TOKEN`."""
    return len(query) / CHARS_PER_TOKEN


def mean_output_tokens(stats: TokenStats, model: str) -> float | None:
    """Mean output tokens of ``model`` in :func:`token_stats` ``stats`` (None: it has no count)."""
    total, count = stats.get(model, (0.0, 0))
    return total / count if count else None


def token_stats(history: History) -> dict[str, tuple[float, int]]:
    """Per model: the sum of known output tokens and how many records have a count."""
    stats: dict[str, tuple[float, int]] = {}
    known = ~np.isnan(history.output_tokens)
    for model, tokens, has in zip(history.model, history.output_tokens, known, strict=True):
        if has:
            total, count = stats.get(model, (0.0, 0))
            stats[model] = (total + float(tokens), count + 1)
    return stats
