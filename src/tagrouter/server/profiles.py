"""Routing profiles over one shared tag table, updated copy-on-write so that routing never waits.

Each profile is the saved router with its own decision rule and knob (fixed, or calibrated at start-up to
a budget). Feedback updates build a new table and new profile routers off to the side and then swap the
whole set in one assignment: a request routes on the old set or on the new one, never on a half-updated
table.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from tagrouter.errors import DataError
from tagrouter.records import HistoryRecord, read_history
from tagrouter.router import Decision, TagRouter
from tagrouter.scoring import TagTable
from tagrouter.server.config import GatewayConfig, Profile


@dataclass(frozen=True)
class RoutingProfile:
    """A profile's router and the model whose cost its 'cost saved' metric compares against."""

    name: str
    router: TagRouter
    reference_model: str


class ProfileSet:
    """The gateway's routing profiles; ``route`` is safe from any thread while ``update`` runs."""

    def __init__(self, router: TagRouter, config: GatewayConfig) -> None:
        self.catalog = router.catalog
        clashes = sorted(set(config.profiles) & set(self.catalog.names))
        if clashes:
            raise DataError(
                f"profile name(s) {', '.join(clashes)} are also catalogue model names; rename the profiles",
                field="profiles",
            )
        self.default = config.default_profile
        self._profiles: Mapping[str, RoutingProfile] = MappingProxyType(
            {name: _build(name, profile, router) for name, profile in config.profiles.items()}
        )
        self._write_lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self._profiles)

    def __contains__(self, name: object) -> bool:
        return name in self._profiles

    def __getitem__(self, name: str) -> RoutingProfile:
        return self._profiles[name]

    def route(self, profile: str, queries: Sequence[str]) -> list[Decision]:
        """Decisions of ``profile`` for ``queries`` (one batch)."""
        return self._profiles[profile].router.route_batch(list(queries))

    def update(self, records: Sequence[HistoryRecord]) -> None:
        """Learn judged records: every profile moves to one new table at once."""
        if not records:
            return
        with self._write_lock:
            current = self._profiles
            first = next(iter(current.values())).router
            table = _copy_table(first.table)
            stats = {model: list(values) for model, values in first.output_token_stats.items()}
            learner = _sharing(first, table, stats)
            learner.update(records)
            updated = {
                name: RoutingProfile(
                    name,
                    learner if p.router is first else _sharing(p.router, table, stats),
                    p.reference_model,
                )
                for name, p in current.items()
            }
            self._profiles = MappingProxyType(updated)


def _sharing(router: TagRouter, table: TagTable, stats: dict[str, list[float]]) -> TagRouter:
    return TagRouter(router.tagger, table, router.catalog, router.scorer, router.decider, stats)


def _copy_table(table: TagTable) -> TagTable:
    return TagTable(
        tags=list(table.tags),
        models=list(table.models),
        counts=table.counts.copy(),
        model_counts=table.model_counts.copy(),
    )


def _build(name: str, profile: Profile, router: TagRouter) -> RoutingProfile:
    """The router of one profile: its rule and fixed knob, or a knob calibrated to its budget."""
    rule = profile.rule or router.decider.rule
    if profile.knob is not None:
        knob = profile.knob
    else:
        knob = router.decider.knob if rule == router.decider.rule else 0.0
    try:
        routed = router.with_decider(rule, knob)
    except ValueError as exc:
        raise DataError(str(exc), field=f"profiles.{name}.rule") from None
    if profile.budget is not None:
        budget = profile.budget
        queries = list({r.query_id: r.query for r in read_history(budget.history)}.values())
        routed.calibrate(queries, mean_cost=budget.mean_cost_usd, strong_share=budget.strong_share)
    catalog = router.catalog
    reference = profile.reference_model or max(
        catalog.names, key=lambda m: (catalog[m].output_usd_per_1m, catalog[m].input_usd_per_1m)
    )
    if reference not in catalog:
        raise DataError(
            f"reference model {reference!r} is not in the router's catalogue ({', '.join(catalog.names)})",
            field=f"profiles.{name}.reference_model",
        )
    return RoutingProfile(name, routed, reference)
