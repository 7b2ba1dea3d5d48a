"""The gateway's collaborators, wired once from a router and a config: the served router (its profiles,
swapped by reloads), upstreams, the feedback writer and follower, metrics, the dashboard, admission
control, client and admin keys, rate limits, session pins and shadow judging. :mod:`tagrouter.server.app`
serves HTTP around them."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from tagrouter.catalog import Catalog
from tagrouter.errors import ArtifactError, DataError
from tagrouter.router import TagRouter
from tagrouter.server.admin import AdminKeys
from tagrouter.server.admission import AdmissionControl
from tagrouter.server.affinity import SessionPins
from tagrouter.server.batching import RouteBatcher
from tagrouter.server.config import GatewayConfig
from tagrouter.server.dashboard import Dashboard
from tagrouter.server.feedback import FeedbackWriter
from tagrouter.server.follow import FeedbackFollower
from tagrouter.server.limits import ModelLimits
from tagrouter.server.metrics import GatewayMetrics
from tagrouter.server.profiles import ProfileSet
from tagrouter.server.reload import (
    Live,
    RouterWatcher,
    ServedRouter,
    current_version,
    load_version,
    stored_feedback,
)
from tagrouter.server.shadow import ShadowJudge, shadow_judging
from tagrouter.server.stores import open_feedback_store, store_name
from tagrouter.server.upstream import Upstreams

log = logging.getLogger("tagrouter.server")


@dataclass(frozen=True)
class GatewayParts:
    """Everything one gateway serves from (built by :func:`build_parts`)."""

    config: GatewayConfig
    #: the router being served with its catalogue's parts; a reload replaces them (read ``served.current``
    #: once per request)
    served: ServedRouter
    batcher: RouteBatcher
    metrics: GatewayMetrics
    admission: AdmissionControl
    #: the client API keys (empty: every request is accepted)
    keys: list[bytes]
    writer: FeedbackWriter
    follower: FeedbackFollower
    shadow: ShadowJudge | None
    #: the session pins, when session affinity is on
    pins: SessionPins | None
    admin: AdminKeys
    dashboard: Dashboard
    #: the folder the router was loaded from (None: reloads are off) and its watcher
    router_dir: Path | None
    watcher: RouterWatcher | None

    @property
    def profiles(self) -> ProfileSet:
        """The routing profiles being served now (a reload swaps them: read them once per use)."""
        return self.served.profiles

    @property
    def catalog(self) -> Catalog:
        """The catalogue being served now (a reload may change it)."""
        return self.served.current.catalog

    @property
    def upstreams(self) -> Upstreams:
        """The upstream endpoints of the catalogue being served now."""
        return self.served.current.upstreams

    @property
    def limits(self) -> ModelLimits:
        """The per-model rate limits of the catalogue being served now."""
        return self.served.current.limits

    async def reload(self) -> dict[str, Any]:
        """Serve the router folder's live version if it is not the one served (see
        :mod:`tagrouter.server.reload`). Raises ``ArtifactError`` or ``DataError`` when it cannot be
        loaded; the old router keeps serving."""
        if self.router_dir is None:
            raise DataError("this gateway was not started from a router folder: nothing to reload")
        if current_version(self.router_dir) == self.served.version:
            self.metrics.reloads.labels("unchanged").inc()
            return {"object": "tagrouter.reload", "status": "unchanged", "version": self.served.version}
        try:
            live = await asyncio.to_thread(load_version, self.router_dir, self.config, self.served.current)
            stored = partial(
                stored_feedback, partial(open_feedback_store, self.config), self.follower.skip_to
            )
            await asyncio.to_thread(self.served.swap, live, stored)
        except (ArtifactError, DataError) as exc:
            self.metrics.reloads.labels("failed").inc()
            log.error("router reload failed, still serving %s: %s", self.served.version, exc)
            raise
        version, catalog = live.version, live.catalog
        if self.pins is not None:
            self.pins.follow(catalog)
        if self.shadow is not None:
            self.shadow.follow(catalog, live.upstreams.endpoints)
        self.dashboard.models = catalog.names
        self.metrics.serving(version)
        self.metrics.reloads.labels("loaded").inc()
        log.info("now serving router version %s", version)
        return {"object": "tagrouter.reload", "status": "loaded", "version": version}

    async def start(self) -> None:
        """Start the background work: the upstream clients, the feedback writer and follower, the
        dashboard's snapshots, the router folder's watcher."""
        await self.upstreams.start()  # first: a reload's endpoints share its client
        self.writer.start()
        self.follower.start()
        self.dashboard.start()
        if self.watcher is not None:
            self.watcher.start(self.reload)

    async def aclose(self) -> None:
        """Stop the background work, drain the feedback writer and close the store and the clients."""
        if self.watcher is not None:
            await self.watcher.close()
        await self.dashboard.aclose()
        await self.follower.close()
        if self.shadow:
            await self.shadow.aclose()
        await self.writer.close()
        await self.upstreams.aclose()


def build_parts(router: TagRouter, config: GatewayConfig, router_dir: Path | None = None) -> GatewayParts:
    """The parts of a gateway for ``router`` (loaded from ``router_dir``, when given: then the gateway
    serves the folder's new versions as they are saved); opens the feedback store and learns its records.

    Raises :class:`~tagrouter.errors.DataError` on a config that does not fit the router."""
    catalog = router.catalog
    upstreams = Upstreams(catalog, config)  # checks the endpoints before anything is opened
    version = current_version(router_dir) if router_dir else ""
    served = ServedRouter(Live(ProfileSet(router, config), version, upstreams, ModelLimits(catalog)))
    batcher = RouteBatcher(
        served.current.decide,
        in_threadpool=config.route_in_threadpool,
        thread_chars=config.thread_routing_chars,
    )
    metrics = GatewayMetrics()
    metrics.serving(served.version or "unversioned")
    metrics.last_learned.set_function(lambda: served.learned_at or 0.0)
    store = open_feedback_store(config)
    replayed, seen = store.changes()
    served.profiles.update(replayed)
    if replayed:
        log.info("learned %d stored feedback records from %s", len(replayed), store_name(config.feedback_db))
    writer = FeedbackWriter(
        store,
        served.update,
        learn_interval_s=config.learn_interval_s,
        weigh=served.weigh,
        section=served.storing,
    )
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
        served=served,
        batcher=batcher,
        metrics=metrics,
        admission=AdmissionControl(config.admission, metrics.rejected),
        keys=[k.encode() for k in dict.fromkeys([*config.client_keys(), *config.admin_keys])],
        writer=writer,
        follower=FeedbackFollower(
            store, served.update, after=seen, interval_s=config.follow_interval_s, section=served.storing
        ),
        shadow=shadow_judging(config.shadow, catalog, upstreams.endpoints, writer, metrics),
        pins=pins,
        admin=AdminKeys(config.admin_keys, config.client_keys()),
        dashboard=Dashboard(metrics.registry, catalog.names, interval_s=config.dashboard_interval_s),
        router_dir=router_dir,
        watcher=RouterWatcher(router_dir, lambda: served.version, config.reload_interval_s)
        if router_dir is not None
        else None,
    )
