"""Live router reloads: the router a gateway serves, and a new saved version swapped in without a restart.

A save (``tagrouter fit``, ``update``, ``calibrate``, :meth:`TagRouter.save`) writes a new version folder
and then switches the folder's ``CURRENT`` file in one atomic rename (:mod:`tagrouter.artifact`). The
:class:`RouterWatcher` reads ``CURRENT`` every ``reload_interval_s`` and, when it names another version,
calls the gateway's reload (``POST /admin/reload`` calls it too): :func:`load_version` loads the version
in a worker thread and :meth:`ServedRouter.swap` puts it in place with one assignment.

:class:`ServedRouter` is the one place where the routing profiles of a gateway change hands. Routing
reads ``served.current`` once per batch, so a batch decides on the old router or the new one, never a
mix; requests already routed finish on the old one. Learning (:meth:`ServedRouter.update`, the hook of
the feedback writer and the follower) and the swap take the same lock, and the swap first learns every
stored feedback record into the new router (as a restart would), so no record is lost between routers.
A version that fails to load, or that has another model catalogue, leaves the old one serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tagrouter.artifact import CURRENT, load_router_version
from tagrouter.catalog import Catalog
from tagrouter.constraints import Allowed
from tagrouter.errors import DataError
from tagrouter.live import Judged, LiveDecision, WeightedOutcome
from tagrouter.router import TagRouter
from tagrouter.server.config import GatewayConfig
from tagrouter.server.periodic import PeriodicTask
from tagrouter.server.profiles import ProfileSet
from tagrouter.server.stores import FeedbackBackend

log = logging.getLogger("tagrouter.server")


@dataclass(frozen=True)
class Live:
    """One router being served: its routing profiles and its version (the router folder's version name;
    ``""`` for a router served without its folder)."""

    profiles: ProfileSet
    version: str


class ServedRouter:
    """The router a gateway serves, replaced whole by :meth:`swap`; ``route`` and ``update`` are safe from
    any thread."""

    def __init__(self, profiles: ProfileSet, version: str) -> None:
        self.current = Live(profiles, version)
        #: when feedback was last learned (Unix time), None before the first
        self.learned_at: float | None = None
        self._lock = threading.Lock()

    @property
    def profiles(self) -> ProfileSet:
        return self.current.profiles

    @property
    def version(self) -> str:
        return self.current.version

    def decide(
        self,
        profile: str,
        queries: Sequence[str],
        fits: Allowed,
        earlier: Sequence[str | None],
        explore: bool | Sequence[bool] = True,
    ) -> list[LiveDecision]:
        """Decisions of the current router (the micro-batcher's decide function)."""
        return self.current.profiles.decide(profile, queries, fits, earlier, explore)

    def weigh(self, judged: Judged) -> float:
        """The weight the current router's learner gives a new feedback (the feedback writer's hook)."""
        return self.current.profiles.weigh(judged)

    def update(self, outcomes: Sequence[WeightedOutcome]) -> None:
        """Learn weighted outcomes into the current router (the feedback writer's and follower's hook)."""
        if not outcomes:
            return
        with self._lock:
            self.current.profiles.update(outcomes)
        self.learned_at = time.time()

    def swap(self, profiles: ProfileSet, version: str, stored: Callable[[], list[WeightedOutcome]]) -> None:
        """Serve ``profiles`` from now on: learn the ``stored()`` feedback into them, then one assignment;
        no other learning runs meanwhile."""
        with self._lock:
            profiles.update(stored())
            self.current = Live(profiles, version)


def load_version(folder: Path, config: GatewayConfig, catalog: Catalog) -> tuple[ProfileSet, str]:
    """The live version of the router in ``folder`` as routing profiles, and its version name.

    Raises :class:`~tagrouter.errors.ArtifactError` for a damaged version and
    :class:`~tagrouter.errors.DataError` for one whose catalogue is not ``catalog`` (the upstreams, rate
    limits and prices of a gateway are fixed at start)."""
    model, decider, version = load_router_version(folder)
    router = TagRouter(model, decider)
    if router.catalog != catalog:
        raise DataError(
            f"version {version} has another model catalogue ({', '.join(router.catalog.names)}) than the "
            f"one served ({', '.join(catalog.names)}): restart the gateway to change models or prices"
        )
    return ProfileSet(router, config), version


def stored_feedback(
    open_store: Callable[[], FeedbackBackend], follower_after: Callable[[int], None]
) -> list[WeightedOutcome]:
    """Every feedback record in the store, read through a store of its own (so that this process's own
    records are included, as at start); tells the follower the last sequence number read."""
    store = open_store()
    try:
        records, seen = store.changes()
    finally:
        store.close()
    follower_after(seen)
    return records


def current_version(folder: Path) -> str:
    """The version ``folder``'s ``CURRENT`` names now (``""`` when it has none, e.g. format version 1)."""
    try:
        return (folder / CURRENT).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


class RouterWatcher(PeriodicTask):
    """Polls ``folder/CURRENT`` and awaits ``reload()`` when it names a version other than the served one
    (``served()``) and than the last one it tried; a zero interval never polls (``POST /admin/reload``
    still works)."""

    def __init__(self, folder: Path, served: Callable[[], str], interval_s: float) -> None:
        super().__init__("tagrouter-router-watcher", interval_s)
        self.folder, self._served = folder, served
        self._tried = ""  # a version that failed to load is not tried again until CURRENT changes
        self._reload: Callable[[], Awaitable[object]] | None = None

    def start(self, reload: Callable[[], Awaitable[object]]) -> None:
        """Start polling, calling ``reload`` on a new version (call from the running event loop)."""
        self._reload = reload
        self.start_steps()

    async def step(self) -> None:
        version = current_version(self.folder)
        if version not in ("", self._served(), self._tried) and self._reload is not None:
            self._tried = version
            await self._reload()  # a reload that fails keeps the old router; it is logged and counted there

    def failure(self) -> str:
        return f"checking {self.folder} for a new router version failed"
