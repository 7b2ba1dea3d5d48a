"""Engines that fit and update routers: ``local`` (this process, the default) or ``ray`` (Ray Data, for
histories that outgrow one process). Both run the same stages (:mod:`tagrouter.engines.stages`) and give
exactly the same table, vocabulary and decisions.

    engines.fit_model("hist/*.parquet", catalog, engine=RayEngine(address="auto"))
    TagRouter.fit(history, catalog, engine="ray")           # the same through the router
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from tagrouter.catalog import Catalog
from tagrouter.engines.source import HistorySource
from tagrouter.engines.stages import Counted, Part, StudentOptions
from tagrouter.errors import DataError
from tagrouter.model import Progress, RoutingModel
from tagrouter.records import History, ReadReport
from tagrouter.scoring import Scorer
from tagrouter.tagging.base import Tagger

if TYPE_CHECKING:
    from tagrouter.tagging.embedded import EmbeddedTagger


class Engine(Protocol):
    """Where the stages run. ``parts`` splits a source into what one worker reads."""

    name: str

    def parts(self, source: HistorySource) -> list[Part]: ...

    def distinct_queries(self, parts: Sequence[Part], report: ReadReport) -> dict[str, str]: ...

    def student(
        self, texts: Sequence[str], options: StudentOptions, progress: Progress | None
    ) -> EmbeddedTagger: ...

    def count(
        self, parts: Sequence[Part], tagger: Tagger, report: ReadReport, progress: Progress | None
    ) -> Counted: ...


def engine_named(engine: str | Engine, *, address: str | None = None) -> Engine:
    """The engine ``engine`` names (``local`` or ``ray``; ``address`` is the Ray cluster's), or itself."""
    if not isinstance(engine, str):
        return engine
    if engine == "local":
        from tagrouter.engines.local import LocalEngine

        return LocalEngine()
    if engine == "ray":
        from tagrouter.engines.ray import RayEngine

        return RayEngine(address=address)
    raise DataError(f"unknown engine {engine!r}: expected 'local' or 'ray'", field="engine")


def fit_model(
    source: HistorySource,
    catalog: Catalog,
    *,
    engine: Engine,
    tagger: Tagger | None = None,
    scorer: Scorer | None = None,
    options: StudentOptions | None = None,
    report: ReadReport | None = None,
    progress: Progress | None = None,
) -> RoutingModel:
    """Fit a routing model on ``source`` with ``engine``; without ``tagger``, the default student is
    distilled from the history's distinct queries. ``report`` receives the rows read and skipped."""
    parts, report = engine.parts(source), report if report is not None else ReadReport()
    if tagger is None:
        texts = engine.distinct_queries(parts, report)
        if not texts:
            raise DataError("the history is empty: a router needs judged records to fit")
        tagger = engine.student(list(texts.values()), options or StudentOptions(), progress)
        report = ReadReport()  # the rows were counted while reading the queries
    counted = engine.count(parts, tagger, report, progress)
    if not counted.table.records:
        raise DataError("the history is empty: a router needs judged records to fit")
    return RoutingModel.build(tagger, counted.table, catalog, scorer, counted.tokens)


def update_model(
    model: RoutingModel,
    source: HistorySource,
    *,
    engine: Engine,
    report: ReadReport | None = None,
    progress: Progress | None = None,
) -> RoutingModel:
    """``model`` with the records of ``source`` learned (tagged by its tagger): the table becomes exactly
    that of a fit on all records with this tagger."""
    counted = engine.count(engine.parts(source), model.tagger, report or ReadReport(), progress)
    return model.learned(counted.table, counted.tokens)


def tuning_sample(source: HistorySource, engine: Engine) -> History:
    """The records of the queries that tuning looks at (:func:`tagrouter.tuning.sampled_ids` of the
    distinct queries in order of first appearance), read from ``source`` in order: what
    :func:`~tagrouter.tuning.tune_model` would pick from the whole history in memory."""
    from tagrouter.engines.local import LocalEngine
    from tagrouter.tuning import sampled_ids

    keep = frozenset(sampled_ids(list(engine.distinct_queries(engine.parts(source), ReadReport()))))
    local = LocalEngine()
    return History.concatenated(
        [batch.of_queries(keep) for part in local.parts(source) for batch in part.batches(ReadReport())]
    )


__all__ = [
    "Engine",
    "HistorySource",
    "StudentOptions",
    "engine_named",
    "fit_model",
    "tuning_sample",
    "update_model",
]
