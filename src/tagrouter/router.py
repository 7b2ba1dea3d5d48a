"""TagRouter = a fitted routing model (tagger, tag table, scorer values) + a policy (the decider).

Both parts are immutable values: changing the scorer, the rule or the knob, or learning new records, gives
a new router, so what a router routes on can never go stale. Many routers (e.g. the gateway's profiles) can
share one model with different deciders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tagrouter.catalog import Catalog
from tagrouter.constraints import Allowed, Needs, allowed
from tagrouter.conversation import Conversation
from tagrouter.deciding import Decider, Rule, calibrate, default_decider
from tagrouter.errors import DataError
from tagrouter.model import Progress, RoutingModel
from tagrouter.records import History, HistoryRecord, ReadReport
from tagrouter.residual import corrected
from tagrouter.scoring import Scorer, TagTable
from tagrouter.tagging.base import Tagger

if TYPE_CHECKING:
    from tagrouter.engines import Engine, HistorySource, TaggerChoice
    from tagrouter.engines.source import Paths


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
    #: models a hard constraint removed (see :mod:`tagrouter.constraints`), and why
    removed: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "tags": self.tags,
            "scores": {k: round(v, 6) for k, v in self.scores.items()},
            "expected_cost_usd": {k: round(v, 8) for k, v in self.expected_costs.items()},
            "ranking": self.ranking,
            "rule": self.rule,
            "knob": self.knob,
            "reason": self.reason,
            "removed": self.removed,
        }


@dataclass(frozen=True)
class TagRouter:
    """Routes queries to the model of the catalogue that the tag scores and prices favour.

    Build one with :meth:`fit`; :meth:`route` / :meth:`route_batch` decide; :meth:`update` learns judged
    records; :meth:`save` / :meth:`load` persist it as a directory.
    """

    model: RoutingModel
    decider: Decider

    def __post_init__(self) -> None:
        self.decider.check(len(self.model.models))

    # ---- building -------------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        history: History | Sequence[HistoryRecord] | Paths | HistorySource,
        catalog: Catalog,
        *,
        tagger: TaggerChoice | None = None,
        scorer: Scorer | None = None,
        decider: Decider | None = None,
        progress: Progress | None = None,
        engine: str | Engine = "local",
        report: ReadReport | None = None,
    ) -> TagRouter:
        """Fit a router on judged history: a list of records, a columnar :class:`History`, or history
        files and glob patterns (streamed, never held in memory whole).

        Without ``tagger``, the embedded default is built from the history's queries (offline teacher ->
        vocabulary -> student); ``tagger`` may also be a function that builds one from the history's
        distinct queries. The history is read twice (its distinct queries, then its counts) and each
        distinct query is tagged once; the tuning reuses those tags. Without ``scorer``, the smoothed scorer's settings are chosen for this
        history by inner cross-validation (:mod:`tagrouter.tuning`), and, without ``decider``, the knob
        too: the cheapest operating point whose inner out-of-fold accept rate reaches the best single
        model's; ``router.model.tuning`` reports the choice. The history may hold models outside the
        catalogue: their outcomes feed the scorer's difficulty prior, but they are never chosen.
        ``engine`` runs the fit: ``"local"`` (this process) or ``"ray"`` (Ray Data;
        :class:`~tagrouter.engines.ray.RayEngine` for a cluster address); both give the same router.
        ``report`` receives the rows read and skipped from files.
        """
        from tagrouter.engines import HistorySource, engine_named, fit_model

        tune = scorer is None
        if tune:
            from tagrouter.tuning import TUNING_QUERIES, tune_model
        fitted = fit_model(
            HistorySource.of(history),
            catalog,
            engine=engine_named(engine),
            tagger=tagger,
            scorer=scorer,
            sample_queries=TUNING_QUERIES if tune else 0,
            report=report,
            progress=progress,
        )
        model = fitted.model
        if tune:
            if progress:
                progress("choosing the scorer's settings", 0, 1)
            chosen, point, tuned = tune_model(model, fitted.sample)
            model = model.with_scorer(chosen, tuned.to_dict(), tuned.residual, tuned.conversation)
            decider = decider or Decider(point.rule, point.knob)
        return cls(model, decider or default_decider(len(catalog.names)))

    def update(
        self, records: History | Sequence[HistoryRecord] | Paths, *, engine: str | Engine = "local"
    ) -> TagRouter:
        """This router with ``records`` (records, a :class:`History`, or history files) learned (see
        :meth:`RoutingModel.updated`): its table is exactly that of a fit on all records with the same
        tagger. ``engine`` counts the new records (see :meth:`fit`)."""
        from tagrouter.engines import HistorySource, engine_named, update_model

        model = update_model(self.model, HistorySource.of(records), engine=engine_named(engine))
        return TagRouter(model, self.decider)

    def with_decider(self, decider: Decider) -> TagRouter:
        """This model under another policy."""
        return TagRouter(self.model, decider)

    def with_scorer(self, scorer: Scorer) -> TagRouter:
        """This router with its table rescored by ``scorer``."""
        return TagRouter(self.model.with_scorer(scorer), self.decider)

    # ---- what it is made of ---------------------------------------------------------------------------
    @property
    def models(self) -> list[str]:
        """The routable models, in catalogue order (the columns of :meth:`score_batch`)."""
        return self.model.models

    @property
    def tagger(self) -> Tagger:
        return self.model.tagger

    @property
    def table(self) -> TagTable:
        return self.model.table

    @property
    def catalog(self) -> Catalog:
        return self.model.catalog

    @property
    def scorer(self) -> Scorer:
        return self.model.scorer

    def mean_output_tokens(self, model: str) -> float:
        return self.model.mean_output_tokens(model)

    # ---- routing --------------------------------------------------------------------------------------
    def expected_costs(self, queries: Sequence[str]) -> np.ndarray:
        """Expected dollars per (query, model); see :meth:`RoutingModel.expected_costs`."""
        return self.model.expected_costs(queries)

    def score_batch(
        self,
        queries: Sequence[str],
        earlier: Sequence[str | None] | None = None,
        conversation: Conversation | None = None,
    ) -> tuple[list[list[str]], np.ndarray]:
        """Tags of each query and the (n × models) score matrix (``earlier``, ``conversation``: see
        :meth:`route_batch`)."""
        return self.model.score(queries, earlier, conversation)

    def route_batch(
        self,
        queries: Sequence[str],
        needs: Sequence[Needs] | None = None,
        earlier: Sequence[str | None] | None = None,
        conversation: Conversation | None = None,
        *,
        fits: Allowed | None = None,
    ) -> list[Decision]:
        """Decide for many queries in one call (much faster per query than calling :meth:`route`).

        ``needs`` (one per query) are hard constraints (:mod:`tagrouter.constraints`): a model that cannot
        take a query is neither chosen nor in its ranking, and the decision's ``removed`` and ``reason``
        say why; a query that no model can take raises ``UnroutableError`` (a :class:`DataError`).
        ``earlier`` (one per query, None for none): the conversation's earlier user turns
        (:func:`tagrouter.chat.earlier_text`), counted as ``conversation`` says (default: the fit's choice,
        else the measured fallback; see :mod:`tagrouter.conversation`).
        ``fits``, instead of ``needs``: the queries' constraints already checked by
        :func:`~tagrouter.constraints.allowed` (so that a caller that checks them first, as the gateway
        does, has them computed once). A query that is empty or only white space raises
        :class:`DataError` naming its position."""
        if isinstance(queries, str):
            raise TypeError("route_batch takes a list of queries; use route() for one query")
        queries = list(queries)
        for number, query in enumerate(queries, start=1):
            if not isinstance(query, str) or not query.strip():
                raise DataError(f"query {number} is empty: there is nothing to route on", field="query")
        if needs is not None and fits is not None:
            raise TypeError("give needs or fits, not both")
        for name, values in (
            ("needs", needs),
            ("earlier", earlier),
            ("fits", None if fits is None else fits.removed),
        ):
            if values is not None and len(values) != len(queries):
                raise DataError(f"got {len(values)} {name} for {len(queries)} queries", field=name)
        if not queries:
            return []
        model, decider = self.model, self.decider
        tag_lists, tag_scores, correction = model.score_parts(queries, earlier, conversation)
        scores = tag_scores if correction is None else corrected(tag_scores, correction)
        costs = model.expected_costs(queries)
        if needs is not None:
            fits = allowed(model.catalog, needs, costs)
        mask = fits.mask if fits is not None else None
        ranking = decider.rank(scores, costs, mask)
        by_tags = None if correction is None else decider.rank(tag_scores, costs, mask)
        models = model.models
        decisions = []
        for i, query in enumerate(queries):
            order = [models[j] for j in ranking[i] if mask is None or mask[i, j]]
            removed = fits.removed[i] if fits is not None else {}
            row_mask = None if mask is None else mask[i]
            reason = _reason(models, decider, ranking[i][0], scores[i], costs[i], row_mask)
            if by_tags is not None:
                reason += _embedding_note(models, ranking[i][0], by_tags[i][0], scores[i] - tag_scores[i])
            if removed:
                reason += "; removed: " + "; ".join(f"{m} ({why})" for m, why in removed.items())
            decisions.append(
                Decision(
                    query=query,
                    model=order[0],
                    tags=tag_lists[i],
                    scores=dict(zip(models, scores[i].tolist(), strict=True)),
                    expected_costs=dict(zip(models, costs[i].tolist(), strict=True)),
                    ranking=order,
                    rule=str(decider.rule),
                    knob=decider.knob,
                    reason=reason,
                    removed=removed,
                )
            )
        return decisions

    def route(self, query: str, needs: Needs | None = None) -> Decision:
        """Decide for one query (``needs``: its hard constraints, see :meth:`route_batch`)."""
        return self.route_batch([query], None if needs is None else [needs])[0]

    # ---- calibration ----------------------------------------------------------------------------------
    def calibrated(
        self,
        queries: Sequence[str],
        *,
        strong_share: float | None = None,
        mean_cost: float | None = None,
        strong_model: str | None = None,
    ) -> TagRouter:
        """This router with the knob set so that, on ``queries``, ``strong_share`` of traffic goes to
        ``strong_model`` (default: the dearest) or the mean expected cost per query is at most ``mean_cost``
        dollars. The new decider's ``calibration`` says what was achieved."""
        queries = list(queries)
        if not queries:
            raise DataError("calibration needs at least one query")
        if strong_model is not None and strong_model not in self.models:
            raise DataError(
                f"strong model {strong_model!r} is not routable (models: {', '.join(self.models)})",
                field="strong_model",
            )
        _, scores = self.score_batch(queries)
        result = calibrate(
            scores,
            self.expected_costs(queries),
            self.decider.rule,
            strong_share=strong_share,
            mean_cost=mean_cost,
            strong_index=self.models.index(strong_model) if strong_model else None,
        )
        return self.with_decider(self.decider.with_knob(result.knob, result))

    # ---- persistence ----------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        """Save as a directory with a versioned manifest, atomically (see :mod:`tagrouter.artifact`)."""
        from tagrouter.artifact import save_router

        save_router(Path(folder), self.model, self.decider)

    @classmethod
    def load(cls, folder: str | Path) -> TagRouter:
        """Load a router saved by :meth:`save`; a damaged or incompatible one raises ``ArtifactError``."""
        from tagrouter.artifact import load_router

        return cls(*load_router(Path(folder)))


def _embedding_note(models: list[str], chosen: int, by_tags: int, shift: np.ndarray) -> str:
    """What the embedding correction did to this decision."""
    largest = int(np.abs(shift).argmax())
    moved = f"; the query embedding moved the scores by up to {shift[largest]:+.3f} ({models[largest]})"
    if chosen == by_tags:
        return moved + ", the tags alone choose the same model"
    return moved + f" and changed the choice: the tags alone choose {models[by_tags]}"


def _reason(
    models: list[str],
    decider: Decider,
    chosen: int,
    scores: np.ndarray,
    costs: np.ndarray,
    mask: np.ndarray | None,
) -> str:
    """One line saying why model ``chosen`` won (among the allowed models, when a mask is given)."""
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    best = int(scores.argmax())
    name, knob = models[chosen], decider.knob
    if best == chosen:
        return f"{name} has the best score ({scores[chosen]:.3f})"
    if decider.rule is Rule.UTILITY:
        return (
            f"{name} scores {scores[chosen]:.3f} vs {scores[best]:.3f} for {models[best]}, "
            f"but costs ${costs[chosen]:.6f} vs ${costs[best]:.6f}: best score − {knob:g} × cost"
        )
    return (
        f"{name} scores {scores[chosen]:.3f}, within knob {knob:g} of the best "
        f"({models[best]}, {scores[best]:.3f}), and is cheaper"
    )
