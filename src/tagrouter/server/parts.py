"""The gateway's collaborators, wired once from a router and a config: profiles, upstreams, the feedback
writer and follower, metrics, admission control, client keys, rate limits, session pins and shadow
judging. :mod:`tagrouter.server.app` serves HTTP around them."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tagrouter.catalog import Catalog
from tagrouter.router import TagRouter
from tagrouter.server.admission import AdmissionControl
from tagrouter.server.affinity import SessionPins
from tagrouter.server.batching import RouteBatcher
from tagrouter.server.config import GatewayConfig
from tagrouter.server.feedback import FeedbackWriter
from tagrouter.server.follow import FeedbackFollower
from tagrouter.server.limits import ModelLimits
from tagrouter.server.metrics import GatewayMetrics
from tagrouter.server.profiles import ProfileSet
from tagrouter.server.shadow import ShadowJudge, shadow_judging
from tagrouter.server.stores import open_feedback_store, store_name
from tagrouter.server.upstream import Upstreams

log = logging.getLogger("tagrouter.server")


@dataclass(frozen=True)
class GatewayParts:
    """Everything one gateway serves from (built by :func:`build_parts`)."""

    config: GatewayConfig
    catalog: Catalog
    upstreams: Upstreams
    profiles: ProfileSet
    batcher: RouteBatcher
    metrics: GatewayMetrics
    admission: AdmissionControl
    #: the client API keys (empty: every request is accepted)
    keys: list[bytes]
    writer: FeedbackWriter
    follower: FeedbackFollower
    shadow: ShadowJudge | None
    limits: ModelLimits
    #: the session pins, when session affinity is on
    pins: SessionPins | None

    async def start(self) -> None:
        """Start the background work: the feedback writer and follower, the upstream clients."""
        self.writer.start()
        self.follower.start()
        await self.upstreams.start()

    async def aclose(self) -> None:
        """Stop the background work, drain the feedback writer and close the store and the clients."""
        await self.follower.close()
        if self.shadow:
            await self.shadow.aclose()
        await self.writer.close()
        await self.upstreams.aclose()


def build_parts(router: TagRouter, config: GatewayConfig) -> GatewayParts:
    """The parts of a gateway for ``router``: opens the feedback store and learns its records.

    Raises :class:`~tagrouter.errors.DataError` on a config that does not fit the router."""
    catalog = router.catalog
    upstreams = Upstreams(catalog, config)  # checks the endpoints before anything is opened
    profiles = ProfileSet(router, config)
    batcher = RouteBatcher(
        profiles.route, in_threadpool=config.route_in_threadpool, thread_chars=config.thread_routing_chars
    )
    metrics = GatewayMetrics()
    store = open_feedback_store(config)
    replayed, seen = store.changes()
    profiles.update(replayed)
    if replayed:
        log.info("learned %d stored feedback records from %s", len(replayed), store_name(config.feedback_db))
    writer = FeedbackWriter(store, profiles.update, learn_interval_s=config.learn_interval_s)
    affinity = config.affinity
    pins = (
        SessionPins(
            catalog, ttl_s=affinity.ttl_s, max_turns=affinity.max_turns, max_sessions=affinity.max_sessions
        )
        if affinity.enabled
        else None
    )
    if pins is not None:
        metrics.sessions.set_function(pins.__len__)
    return GatewayParts(
        config=config,
        catalog=catalog,
        upstreams=upstreams,
        profiles=profiles,
        batcher=batcher,
        metrics=metrics,
        admission=AdmissionControl(config.admission, metrics.rejected),
        keys=[k.encode() for k in config.client_keys()],
        writer=writer,
        follower=FeedbackFollower(store, profiles.update, after=seen, interval_s=config.follow_interval_s),
        shadow=shadow_judging(config.shadow, catalog, upstreams.endpoints, writer, metrics),
        limits=ModelLimits(catalog),
        pins=pins,
    )
