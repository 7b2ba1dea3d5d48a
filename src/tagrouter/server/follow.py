"""Replicas that learn together: apply the feedback other gateway processes stored in the shared store.

Every ``follow_interval_s`` the follower reads the feedback rows stored after the last one it saw, skips
those its own process wrote (already learned when they were written), and teaches the router the rest. So
a replica routes on feedback posted to another one at most ``follow_interval_s`` plus one read and one
update later (the update costs in proportion to the tags touched: well under a millisecond per record).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tagrouter.live import WeightedOutcome
from tagrouter.server.periodic import PeriodicTask
from tagrouter.server.stores import FeedbackBackend


class FeedbackFollower(PeriodicTask):
    """Polls ``store`` for other replicas' feedback after sequence number ``after`` and ``learn``s it;
    ``sleep`` waits out the interval (tests pass one on a clock they move)."""

    def __init__(
        self,
        store: FeedbackBackend,
        learn: Callable[[list[WeightedOutcome]], None],
        *,
        after: int,
        interval_s: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__("tagrouter-follower", interval_s, sleep)
        self.store, self._learn, self.after = store, learn, after
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
        records, last = self.store.changes(self.after)
        if records:
            self._learn(records)
            self.learned += len(records)
        self.after = last
        return len(records)
