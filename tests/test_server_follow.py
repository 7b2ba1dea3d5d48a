"""A replica learns the feedback other replicas stored within one ``follow_interval_s`` (plus one read and
one update), on a clock the test moves (README, *Scale*: "a replica routes on feedback posted to another
within that interval plus one read and one update").

The follower runs its real loop with an injected sleep on a stepped clock and a store of other replicas'
feedback; the test moves the clock and waits (polling, generous deadline) until the follower has learned.
Lag is measured on the stepped clock, so it is exact and does not depend on how busy the machine is. The
end-to-end check with two ``tagrouter serve`` processes is tests/test_server_replicas.py (a generous real
bound). Bugs caught (checked by hand): a follower that sleeps twice per poll (lag of two intervals), or
that never moves its read position (it learns the same records again).
"""

from __future__ import annotations

import asyncio

from tagrouter.records import HistoryRecord
from tagrouter.server.follow import FeedbackFollower

INTERVAL_S = 1.0


class SteppedClock:
    """Sleeps that end only when the test moves the clock past them."""

    def __init__(self) -> None:
        self.now = 0.0
        self.requested: list[float] = []
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    async def sleep(self, seconds: float) -> None:
        self.requested.append(seconds)
        future = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, future))
        await future

    @property
    def sleeping(self) -> int:
        return len(self._sleepers)

    def advance_to(self, when: float) -> None:
        self.now = when
        for entry in [s for s in self._sleepers if s[0] <= when + 1e-9]:
            self._sleepers.remove(entry)
            entry[1].set_result(None)


class OtherReplicas:
    """A feedback store holding what other replicas stored (sequence numbers from 1)."""

    def __init__(self) -> None:
        self.rows: list[HistoryRecord] = []

    def store(self, count: int) -> None:
        start = len(self.rows)
        self.rows += [
            HistoryRecord(query_id=f"q{start + i}", query=f"query {start + i}", model="mid", outcome="win")
            for i in range(count)
        ]

    def changes(self, after: int = 0) -> tuple[list[HistoryRecord], int]:
        return self.rows[after:], len(self.rows)


async def _until(condition, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.005)


def test_a_replica_learns_others_feedback_within_one_interval() -> None:
    async def scenario() -> list[tuple[float, int]]:
        clock, store = SteppedClock(), OtherReplicas()
        learned: list[tuple[float, int]] = []  # (clock time, records) of each update
        follower = FeedbackFollower(
            store, lambda rows, _: learned.append((clock.now, len(rows))), after=0, interval_s=INTERVAL_S,
            sleep=clock.sleep,
        )  # fmt: skip
        follower.start()
        await _until(lambda: clock.sleeping == 1, "the follower never waited")
        clock.advance_to(0.3)
        store.store(500)  # stored by another replica at t = 0.3
        clock.advance_to(0.999)
        await asyncio.sleep(0.05)
        assert learned == []  # not before the interval is over
        clock.advance_to(1.0)
        await _until(lambda: learned, "not learned at the end of the interval")
        await _until(lambda: clock.sleeping == 1, "the follower did not wait again")
        store.store(7)  # the worst case: stored just after a poll, at t = 1.0
        clock.advance_to(2.0)
        await _until(lambda: len(learned) == 2, "not learned one interval after it was stored")
        await _until(lambda: clock.sleeping == 1, "the follower did not wait again")
        clock.advance_to(3.0)  # nothing new: nothing learned again
        await _until(lambda: clock.sleeping == 1 and len(clock.requested) == 4, "no third poll")
        await follower.close()
        assert clock.requested == [INTERVAL_S] * 4
        assert follower.learned == 507
        return learned

    learned = asyncio.run(scenario())
    assert learned == [(1.0, 500), (2.0, 7)]  # lags 0.7 and 1.0: never more than the interval
