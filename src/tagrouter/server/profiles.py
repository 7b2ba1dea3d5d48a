"""Routing profiles: one shared live learner, one policy (decider) per profile.

Every profile routes through the same :class:`~tagrouter.live.LiveLearner` (one routing model); a profile
is only its decider (rule and knob, fixed or calibrated at start-up to a budget), its exploration budget
(each profile's spend is counted apart) and the model its 'cost saved' metric compares against. Learning
feedback builds one new model (in proportion to the tags it touches) and swaps it in with one assignment,
so every profile learns every record at once, and a request routes on the old model or the new one, never
on a half-updated one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from tagrouter.constraints import Allowed
from tagrouter.conversation import from_setting
from tagrouter.deciding import Decider
from tagrouter.errors import DataError
from tagrouter.live import Judged, LiveDecision, LiveLearner, LivePolicy, WeightedOutcome
from tagrouter.model import RoutingModel
from tagrouter.records import read_history
from tagrouter.router import Decision, TagRouter
from tagrouter.server.config import GatewayConfig, Profile


@dataclass(frozen=True)
class RoutingProfile:
    """A profile's policy and the model whose cost its 'cost saved' metric compares against."""

    name: str
    decider: Decider
    reference_model: str


class ProfileSet:
    """The gateway's routing profiles over one shared learner; ``decide`` and ``route`` are safe from any
    thread while ``update`` runs."""

    def __init__(self, router: TagRouter, config: GatewayConfig) -> None:
        self.catalog = router.catalog
        clashes = sorted(set(config.profiles) & set(self.catalog.names))
        if clashes:
            raise DataError(
                f"profile name(s) {', '.join(clashes)} are also catalogue model names; rename the profiles",
                field="profiles",
            )
        self.default = config.default_profile
        self.conversation = from_setting(config.conversation_weight)  # None: the router's own
        self._profiles: Mapping[str, RoutingProfile] = MappingProxyType(
            {name: _build(name, profile, router) for name, profile in config.profiles.items()}
        )
        learning = config.learning
        history = [r for path in learning.history for r in read_history(path)] or None
        policy = LivePolicy(
            budget_share=learning.exploration_budget,
            per_source_weight=learning.per_key_weight,
            window_s=learning.window_s,
            reselect_growth=2.0 if history else None,
        )
        self.learner = LiveLearner(router, policy, history=history, background=True)

    @property
    def model(self) -> RoutingModel:
        """The current shared model."""
        return self.learner.model

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
        """Greedy decisions of ``profile`` for ``queries`` (one batch), among the models ``fits`` allows them
        (checked constraints, see :func:`~tagrouter.constraints.allowed`), after their conversations'
        ``earlier`` turns (counted as the config's ``conversation_weight`` says): no exploration."""
        router = self.router(profile)
        return router.route_batch(list(queries), None, earlier, self.conversation, fits=fits)

    def decide(
        self,
        profile: str,
        queries: Sequence[str],
        fits: Allowed | None = None,
        earlier: Sequence[str | None] | None = None,
        explore: bool | Sequence[bool] = True,
    ) -> list[LiveDecision]:
        """Decisions of ``profile`` as :meth:`route`'s, exploring where ``explore`` allows within the
        profile's budget; each says its propensity and whether it explored."""
        return self.learner.decide_batch(
            list(queries),
            None,
            earlier,
            self.conversation,
            fits=fits,
            decider=self._profiles[profile].decider,
            budget_key=profile,
            explore=explore,
        )

    def weigh(self, judged: Judged) -> float:
        """The weight a new feedback is stored and learned with (0: its key is over its bound)."""
        return self.learner.weigh(judged)

    def update(self, outcomes: Sequence[WeightedOutcome]) -> None:
        """Learn judged outcomes with their stored weights: one new shared model, swapped in for every
        profile at once."""
        if outcomes:
            self.learner.learn_weighted([j for j, _ in outcomes], [w for _, w in outcomes])


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
