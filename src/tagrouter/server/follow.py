"""Replicas that learn together: apply the feedback other gateway processes stored in the shared store.

Every ``follow_interval_s`` the follower reads the feedback rows stored after the last one it saw, skips
those its own process wrote (already learned when they were written), and teaches the router the rest. So
a replica routes on feedback posted to another one at most ``follow_interval_s`` plus one read and one
update later (the update costs in proportion to the tags touched: well under a millisecond per record).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager

from tagrouter.live import WeightedOutcome
from tagrouter.server.periodic import PeriodicTask
from tagrouter.server.stores import FeedbackBackend


class FeedbackFollower(PeriodicTask):
    """Polls ``store`` for other replicas' feedback after sequence number ``after`` and ``learn``s it
    with the generation it was read under (``learn`` returns False when a reload has learned it from the
    store since: then the follower reads on from where the reload's :meth:`skip_to` put it); ``section``
    is :meth:`tagrouter.server.reload.ServedRouter.storing` (default: always generation 0); ``sleep``
    waits out the interval (tests pass one on a clock they move)."""

    def __init__(
        self,
        store: FeedbackBackend,
        learn: Callable[[list[WeightedOutcome], int], bool | None],
        *,
        after: int,
        interval_s: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        section: Callable[[], AbstractContextManager[int]] = lambda: contextlib.nullcontext(0),
    ) -> None:
        super().__init__("tagrouter-follower", interval_s, sleep)
        self.store, self._learn, self.after, self._section = store, learn, after, section
        #: records learned from other replicas since start
        self.learned = 0

    def start(self) -> None:
        """Start polling (call from the running event loop); a zero interval never polls."""
        self.start_steps()

    async def step(self) -> None:
        await asyncio.to_thread(self.poll)

    def failure(self) -> str:
        return "reading other replicas' feedback failed (the store is unreachable for now?)"

    def skip_to(self, seq: int) -> None:
        """Read only feedback stored after ``seq`` from now on (a reload has learned everything up to it)."""
        self.after = max(self.after, seq)

    def poll(self) -> int:
        """Learn what other replicas stored since the last poll; returns how many records."""
        with self._section() as generation:
            after = self.after
        records, last = self.store.changes(after)
        if records:
            if self._learn(records, generation) is False:
                return 0  # a reload read the store meanwhile and learned them
            self.learned += len(records)
        with self._section() as now:
            if now == generation:  # else a reload read the store since: the follower reads on from there
                self.after = max(self.after, last)
        return len(records)
