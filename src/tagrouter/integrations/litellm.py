"""TagRouter as a LiteLLM routing plugin: it picks the deployment of a model group for each request.

LiteLLM's ``Router(plugins=[...])`` runs each plugin's ``async run(context)`` before it selects a
deployment; ``context.candidate_models`` lists the ``litellm_params.model`` of the group's deployments,
and LiteLLM only selects a deployment whose model survives. :class:`TagRouterPlugin` routes the request's
last user message and earlier user turns (as the gateway does, :mod:`tagrouter.chat`) among the catalogue models that are
deployed in the group, under the hard constraints the messages imply (images, audio, tool turns, prompt
tokens against ``context_window``), and keeps only the chosen model's deployments. Its decision is in
``context.signals["tagrouter"]`` (LiteLLM stamps it on the request metadata as
``routing_plugin_signals``).

The plugin decides through a :class:`~tagrouter.live.LiveLearner`: give it one with an exploration budget
(``TagRouterPlugin(LiveLearner(router, LivePolicy(budget_share=0.02)))``) and feed judged outcomes back
with :meth:`TagRouterPlugin.learn` (each with the ``propensity`` of its signal), and it explores and learns
as the gateway does; given a plain router, it never explores (nothing would learn from it).

A deployment serves catalogue model ``m`` when its model is ``m`` or ends with ``/m``
(``openai/small-7b`` serves ``small-7b``), or as ``deployments`` maps it. A group none of whose
deployments serves a catalogue model, a request without user text, or messages that are not a valid chat
request (as :class:`tagrouter.chat.ChatRequest` reads them, the gateway's rules), is left as it is.

In a LiteLLM proxy config: ``router_settings: {plugins: ["tagrouter.integrations.litellm.plugin"]}``
with the environment variable ``TAGROUTER_ROUTER`` naming the saved router folder (see the README).
This module does not import ``litellm``.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagrouter.chat import MAX_ROUTING_CHARS, ChatRequest, read_chat
from tagrouter.conversation import Setting, from_setting
from tagrouter.errors import DataError, validated
from tagrouter.live import Judged, LiveLearner, LivePolicy
from tagrouter.router import TagRouter

if TYPE_CHECKING:
    from litellm.types.router import RoutingContext

#: The environment variable that names the saved router of :data:`plugin`.
ROUTER_ENV = "TAGROUTER_ROUTER"
#: The key of the decision in ``context.signals``.
SIGNAL = "tagrouter"


class TagRouterPlugin:
    """A LiteLLM routing plugin around a :class:`TagRouter` (see the module docstring).

    ``deployments`` maps a catalogue model to the ``litellm_params.model`` that serves it (default: the
    name rule above); ``model_groups`` limits the plugin to those LiteLLM model groups (default: every
    group with a deployment of a catalogue model); ``conversation_weight``: how a conversation's earlier
    user turns count (default ``"router"``: the router's choice; see
    :func:`tagrouter.conversation.from_setting`), and ``max_routing_chars`` the characters of a text routed
    on, as the gateway's (see :mod:`tagrouter.chat`)."""

    def __init__(
        self,
        router: TagRouter | LiveLearner,
        *,
        deployments: Mapping[str, str] | None = None,
        model_groups: Collection[str] | None = None,
        conversation_weight: Setting = "router",
        max_routing_chars: int = MAX_ROUTING_CHARS,
    ) -> None:
        if isinstance(router, TagRouter):
            router = LiveLearner(router, LivePolicy(budget_share=0.0, reselect_growth=None))
        self.learner = router
        unknown = sorted(set(deployments or {}) - set(self.router.models))
        if unknown:
            raise DataError(
                f"deployments: {', '.join(unknown)} not in the router's catalogue", field="deployments"
            )
        self.deployments = dict(deployments or {})
        self.model_groups = None if model_groups is None else frozenset(model_groups)
        self.conversation = from_setting(conversation_weight)
        self.max_routing_chars = max_routing_chars

    @classmethod
    def load(cls, folder: str | Path, **options: Any) -> TagRouterPlugin:
        """The plugin around the router saved in ``folder``."""
        return cls(TagRouter.load(folder), **options)

    @property
    def router(self) -> TagRouter:
        """The learner's current router."""
        return self.learner.router

    def learn(self, judged: list[Judged]) -> list[float]:
        """Learn judged outcomes of this plugin's decisions (see :meth:`LiveLearner.learn`)."""
        return self.learner.learn(judged)

    def served_by(self, litellm_model: str) -> str | None:
        """The catalogue model a deployment's ``litellm_params.model`` serves, or None."""
        for name in self.router.models:
            mapped = self.deployments.get(name)
            if litellm_model == mapped or (
                mapped is None and (litellm_model == name or litellm_model.endswith("/" + name))
            ):
                return name
        return None

    async def run(self, context: RoutingContext) -> RoutingContext:
        """Keep only the deployments of the model TagRouter chooses for this request."""
        group = context.metadata.get("model_group")
        if self.model_groups is not None and group not in self.model_groups:
            return context
        served = {c: self.served_by(c) for c in context.candidate_models}
        deployed = {m for m in served.values() if m is not None}
        if not deployed:
            return context
        try:
            chat = validated(ChatRequest, {"messages": context.structured_messages})
        except DataError:  # not messages the gateway would accept either: LiteLLM decides
            return context
        read = read_chat(chat, self.max_routing_chars)
        if read.query is None:
            return context
        undeployed = frozenset(m for m in self.router.models if m not in deployed)
        needed = [replace(read.needs, exclude=undeployed)]
        live = self.learner.decide_batch([read.query], needed, [read.earlier], self.conversation)[0]
        decision = live.decision
        context.candidate_models = [c for c, m in served.items() if m == decision.model]
        context.signals[SIGNAL] = {
            "model": decision.model,
            "tags": decision.tags,
            "ranking": decision.ranking,
            "reason": decision.reason,
            "propensity": live.propensity,
            "explored": live.explored,
        }
        return context


def __getattr__(name: str) -> TagRouterPlugin:
    """``plugin``: the plugin around the router saved in ``$TAGROUTER_ROUTER``, loaded at first use (the
    dotted path a LiteLLM proxy config names)."""
    if name != "plugin":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    folder = os.environ.get(ROUTER_ENV)
    if not folder:
        raise DataError(f"set {ROUTER_ENV} to the folder of a saved router to use {__name__}.plugin")
    globals()["plugin"] = loaded = TagRouterPlugin.load(folder)
    return loaded
