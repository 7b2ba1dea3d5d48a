"""Routing profiles: one shared routing model, one policy (decider) per profile.

Every profile routes on the same :class:`~tagrouter.model.RoutingModel`; a profile is only its decider
(rule and knob, fixed or calibrated at start-up to a budget) and the model its 'cost saved' metric compares
against. Learning feedback builds one new model (in proportion to the tags it touches) and swaps it in with
one assignment, so every profile learns every record at once, and a request routes on the old model or the
new one, never on a half-updated one.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from tagrouter.constraints import Allowed
from tagrouter.deciding import Decider
from tagrouter.errors import DataError
from tagrouter.model import RoutingModel
from tagrouter.records import HistoryRecord, read_history
from tagrouter.router import Decision, TagRouter
from tagrouter.server.config import GatewayConfig, Profile


@dataclass(frozen=True)
class RoutingProfile:
    """A profile's policy and the model whose cost its 'cost saved' metric compares against."""

    name: str
    decider: Decider
    reference_model: str


class ProfileSet:
    """The gateway's routing profiles over one shared model; ``route`` is safe from any thread while
    ``update`` runs."""

    def __init__(self, router: TagRouter, config: GatewayConfig) -> None:
        self.catalog = router.catalog
        clashes = sorted(set(config.profiles) & set(self.catalog.names))
        if clashes:
            raise DataError(
                f"profile name(s) {', '.join(clashes)} are also catalogue model names; rename the profiles",
                field="profiles",
            )
        self.default = config.default_profile
        self.conversation_weight = config.conversation_weight
        self.model: RoutingModel = router.model
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

    def router(self, profile: str) -> TagRouter:
        """The router of ``profile``: the current shared model under the profile's policy."""
        return TagRouter(self.model, self._profiles[profile].decider)

    def route(
        self,
        profile: str,
        queries: Sequence[str],
        fits: Allowed | None = None,
        earlier: Sequence[str | None] | None = None,
    ) -> list[Decision]:
        """Decisions of ``profile`` for ``queries`` (one batch), among the models ``fits`` allows them
        (checked constraints, see :func:`~tagrouter.constraints.allowed`), after their conversations'
        ``earlier`` turns (weighing the config's ``conversation_weight``)."""
        router = self.router(profile)
        return router.route_batch(list(queries), None, earlier, self.conversation_weight, fits=fits)

    def update(self, records: Sequence[HistoryRecord]) -> None:
        """Learn judged records: one new shared model, swapped in for every profile at once."""
        if not records:
            return
        with self._write_lock:
            self.model = self.model.updated(records)


def _build(name: str, profile: Profile, router: TagRouter) -> RoutingProfile:
    """The policy of one profile: its rule and fixed knob, or a knob calibrated to its budget."""
    rule = profile.rule or router.decider.rule
    if profile.knob is not None:
        knob = profile.knob
    else:
        knob = router.decider.knob if rule == router.decider.rule else 0.0
    try:
        routed = router.with_decider(Decider(rule, knob))
    except DataError as exc:
        raise DataError(exc.reason, field=f"profiles.{name}.{exc.field or 'rule'}") from None
    if profile.budget is not None:
        budget = profile.budget
        queries = list({r.query_id: r.query for r in read_history(budget.history)}.values())
        routed = routed.calibrated(queries, mean_cost=budget.mean_cost_usd, strong_share=budget.strong_share)
    catalog = router.catalog
    reference = profile.reference_model or max(catalog.names, key=lambda m: catalog[m].price_key)
    if reference not in catalog:
        raise DataError(
            f"reference model {reference!r} is not in the router's catalogue ({', '.join(catalog.names)})",
            field=f"profiles.{name}.reference_model",
        )
    return RoutingProfile(name, routed.decider, reference)
