"""Engines that fit and update routers: ``local`` (this process, the default) or ``ray`` (Ray Data, for
histories that outgrow one process). Both run the same stages (:mod:`tagrouter.engines.stages`) on the
same blocks and give the same table count for count and the same scores bit for bit.

    engines.fit_model("hist/*.parquet", catalog, engine=RayEngine(address="auto"))
    TagRouter.fit(history, catalog, engine="ray")           # the same through the router
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from tagrouter.catalog import Catalog
from tagrouter.engines.source import HistorySource
from tagrouter.engines.stages import (
    Counted,
    Part,
    Plan,
    StudentOptions,
    Survey,
    Tags,
    tuning_sample,
)
from tagrouter.errors import DataError
from tagrouter.model import Progress, RoutingModel
from tagrouter.records import ReadReport
from tagrouter.scoring import Scorer, TagTable
from tagrouter.tagging.base import Tagger
from tagrouter.tuning import TuningSample, sampled_numbers

if TYPE_CHECKING:
    from tagrouter.tagging.embedded import EmbeddedTagger

#: A tagger, or what builds one from the history's distinct queries (in order of first appearance).
TaggerChoice = Tagger | Callable[[list[str]], Tagger]


class Engine(Protocol):
    """Where the stages run. ``parts`` splits a source into what one worker reads; ``survey`` and
    ``count`` read every part once each."""

    name: str

    def parts(self, source: HistorySource) -> list[Part]: ...

    def survey(self, parts: Sequence[Part], report: ReadReport) -> Survey: ...

    def student(
        self, texts: Sequence[str], options: StudentOptions, progress: Progress | None
    ) -> EmbeddedTagger: ...

    def tag(self, texts: Sequence[str], tagger: Tagger, progress: Progress | None) -> Tags: ...

    def count(
        self,
        parts: Sequence[Part],
        positions: dict[int, list[np.ndarray]],
        plan: Plan,
        progress: Progress | None,
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


@dataclass(frozen=True)
class Pass:
    """What one pass over a history gives: the tagger, the table it counts, the output-token statistics,
    and the tuning sample (when one was asked for)."""

    tagger: Tagger
    table: TagTable
    tokens: dict[str, tuple[float, int]]
    sample: TuningSample | None


def run_pass(
    source: HistorySource,
    *,
    engine: Engine,
    tagger: TaggerChoice | None = None,
    options: StudentOptions | None = None,
    sample_queries: int = 0,
    report: ReadReport | None = None,
    progress: Progress | None = None,
) -> Pass:
    """Read ``source`` twice with ``engine`` (its distinct queries, then its counts) and tag each distinct
    query once; without ``tagger``, the default student is distilled from the distinct queries first.
    With ``sample_queries``, the records of that many distinct queries (a seeded sample) come back as the
    tuning sample. ``report`` receives the rows read and skipped."""
    parts, report = engine.parts(source), report if report is not None else ReadReport()
    survey = engine.survey(parts, report)
    if tagger is None:
        if not survey.texts:
            raise DataError("the history is empty: a router needs judged records to fit")
        tagger = engine.student(survey.texts, options or StudentOptions(), progress)
    elif not isinstance(tagger, Tagger):
        tagger = tagger(survey.texts)
    sampled = np.zeros(len(survey.texts), dtype=bool)
    sampled[sampled_numbers(len(survey.texts), sample_queries)] = sample_queries > 0
    plan = Plan(engine.tag(survey.texts, tagger, progress), list(survey.models), sampled)
    counted = engine.count(parts, survey.positions, plan, progress)
    sample = tuning_sample(plan, survey.texts, counted, survey.earlier) if sample_queries else None
    return Pass(tagger, counted.table(plan), counted.tokens(plan), sample)


@dataclass(frozen=True)
class Fitted:
    """A fitted routing model and the tuning sample its pass gave (None when none was asked for)."""

    model: RoutingModel
    sample: TuningSample | None


def fit_model(
    source: HistorySource,
    catalog: Catalog,
    *,
    engine: Engine,
    tagger: TaggerChoice | None = None,
    scorer: Scorer | None = None,
    options: StudentOptions | None = None,
    sample_queries: int = 0,
    report: ReadReport | None = None,
    progress: Progress | None = None,
) -> Fitted:
    """Fit a routing model on ``source`` with ``engine`` (see :func:`run_pass`)."""
    done = run_pass(
        source,
        engine=engine,
        tagger=tagger,
        options=options,
        sample_queries=sample_queries,
        report=report,
        progress=progress,
    )
    if not done.table.records:
        raise DataError("the history is empty: a router needs judged records to fit")
    return Fitted(RoutingModel.build(done.tagger, done.table, catalog, scorer, done.tokens), done.sample)


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
    done = run_pass(source, engine=engine, tagger=model.tagger, report=report, progress=progress)
    return model.learned(done.table, done.tokens)


__all__ = [
    "Engine",
    "Fitted",
    "HistorySource",
    "Pass",
    "StudentOptions",
    "engine_named",
    "fit_model",
    "run_pass",
    "update_model",
]
