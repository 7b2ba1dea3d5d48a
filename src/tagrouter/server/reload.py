"""Live router reloads: the router a gateway serves, and a new saved version swapped in without a restart.

A save (``tagrouter fit``, ``update``, ``calibrate``, ``models``, :meth:`TagRouter.save`) writes a new
version folder and then switches the folder's ``CURRENT`` file in one atomic rename
(:mod:`tagrouter.artifact`). The :class:`RouterWatcher` reads ``CURRENT`` every ``reload_interval_s`` and,
when it names another version, calls the gateway's reload (``POST /admin/reload`` calls it too):
:func:`load_version` loads the version in a worker thread and :meth:`ServedRouter.swap` puts it in place
with one assignment.

A version may route over another catalogue (``tagrouter models`` adds, re-prices or drops models): what
depends on the catalogue is served with it, as one :class:`Live` (the routing profiles, the upstream
endpoints, the per-model rate limits). :func:`load_version` checks the gateway config against the new
catalogue (profiles' ``reference_model``, ``endpoints`` overrides, ``shadow``) and refuses a version that
does not fit it, as it refuses a damaged one: the old version keeps serving.

:class:`ServedRouter` is the one place where the routing profiles of a gateway change hands. A request
reads ``served.current`` once and is decided, sent and accounted on that :class:`Live`, so it sees the old
version or the new one, never a mix; requests in flight finish on the old one. Learning
(:meth:`ServedRouter.update`, the hook of the feedback writer and the follower) and the swap take the same
lock; the swap learns every stored feedback record into the new router (as a restart would) and carries
the old learner's exploration spend and per-source windows over (:meth:`LiveLearner.carry_from`).

Exactly once: every feedback record is learned once by the router being served, whether it is stored
while a reload reads the store or not. The swap reads the store inside :meth:`ServedRouter.storing`, the
section that this process's commits of feedback also run in, and starts a new *generation* there; the
writer and the follower learn with the generation their records were committed or read under, and
:meth:`ServedRouter.update` drops records of an older generation: the new router learned them from the
store already.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tagrouter.artifact import CURRENT, load_router_version
from tagrouter.catalog import Catalog
from tagrouter.constraints import Allowed
from tagrouter.errors import ArtifactError, DataError
from tagrouter.live import Judged, LiveDecision, WeightedOutcome
from tagrouter.router import TagRouter
from tagrouter.server.config import GatewayConfig
from tagrouter.server.limits import ModelLimits
from tagrouter.server.periodic import PeriodicTask
from tagrouter.server.profiles import ProfileSet
from tagrouter.server.shadow import shadow_targets
from tagrouter.server.stores import FeedbackBackend
from tagrouter.server.upstream import Upstreams

log = logging.getLogger("tagrouter.server")


@dataclass(frozen=True)
class Live:
    """One router being served, with what depends on its catalogue: its routing profiles, its version
    (the router folder's version name; ``""`` for a router served without its folder), the upstream
    endpoints of its models and their rate limits."""

    profiles: ProfileSet
    version: str
    upstreams: Upstreams
    limits: ModelLimits

    @property
    def catalog(self) -> Catalog:
        return self.profiles.catalog

    def decide(
        self,
        profile: str,
        queries: Sequence[str],
        fits: Allowed,
        earlier: Sequence[str | None],
        explore: bool | Sequence[bool] = True,
    ) -> list[LiveDecision]:
        """Decisions of this router (the micro-batcher's decide function: one batch per served router)."""
        return self.profiles.decide(profile, queries, fits, earlier, explore)


class ServedRouter:
    """The router a gateway serves, replaced whole by :meth:`swap`; ``update`` and ``weigh`` are safe from
    any thread."""

    def __init__(self, live: Live) -> None:
        self.current = live
        #: when feedback was last learned (Unix time), None before the first
        self.learned_at: float | None = None
        #: starts anew at each swap (see the module docstring)
        self.generation = 0
        self._lock = threading.Lock()  # learning and swaps
        self._store_lock = threading.Lock()  # this process's feedback commits and a swap's read of the store

    @property
    def profiles(self) -> ProfileSet:
        return self.current.profiles

    @property
    def version(self) -> str:
        return self.current.version

    @contextmanager
    def storing(self) -> Iterator[int]:
        """The section a commit of feedback (or a follower's bookkeeping) runs in: no swap reads the store
        meanwhile. Yields the generation that what is committed there is learned with."""
        with self._store_lock:
            yield self.generation

    def weigh(self, judged: Judged) -> float:
        """The weight the current router's learner gives a new feedback (the feedback writer's hook, called
        within :meth:`storing`)."""
        return self.current.profiles.weigh(judged)

    def update(self, outcomes: Sequence[WeightedOutcome], generation: int) -> bool:
        """Learn weighted outcomes committed or read under ``generation`` into the current router (the
        feedback writer's and follower's hook); False, learning nothing, when a swap has started another
        generation since (the swap learned them from the store)."""
        with self._lock:
            if generation != self.generation:
                return False
            if outcomes:
                self.current.profiles.update(outcomes)
                self.learned_at = time.time()
        return True

    def swap(self, live: Live, stored: Callable[[], list[WeightedOutcome]]) -> None:
        """Serve ``live`` from now on: learn the ``stored()`` feedback into it, carry the old learner's
        bookkeeping over, then one assignment; no other learning runs meanwhile."""
        with self._lock:
            with self._store_lock:
                records = stored()
                self.generation += 1
            live.profiles.update(records)
            with self._store_lock:  # no feedback is weighed by the old learner after it is carried over
                live.profiles.learner.carry_from(self.current.profiles.learner)
                self.current = live
            if records:
                self.learned_at = time.time()


def load_version(folder: Path, config: GatewayConfig, serving: Live) -> Live:
    """The live version of the router in ``folder``, with its catalogue's endpoints (over the pooled
    client of ``serving``, the version served now) and rate limits (keeping this minute's counts).

    Raises :class:`~tagrouter.errors.ArtifactError` for a damaged version and
    :class:`~tagrouter.errors.DataError` for one that the gateway config does not fit (a profile's
    ``reference_model``, an ``endpoints`` override or the ``shadow`` section naming a model that its
    catalogue lacks, an upstream key variable that is not set)."""
    model, decider, version = load_router_version(folder)
    router = TagRouter(model, decider)
    catalog = router.catalog
    try:
        upstreams = serving.upstreams.for_catalog(catalog)
        if config.shadow is not None:
            shadow_targets(config.shadow, catalog, upstreams.endpoints)
        profiles = ProfileSet(router, config)
    except DataError as exc:
        raise DataError(
            f"version {version} (models {', '.join(catalog.names)}) does not fit the gateway config: "
            f"{exc.reason}",
            field=exc.field,
        ) from None
    return Live(profiles, version, upstreams, serving.limits.for_catalog(catalog))


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
            with contextlib.suppress(ArtifactError, DataError):  # refused: logged and counted by the reload
                await self._reload()

    def failure(self) -> str:
        return f"checking {self.folder} for a new router version failed"
