"""Routing micro-batches: requests of one event-loop turn share one route call per profile."""

from __future__ import annotations

import asyncio
import threading

import pytest

pytest.importorskip("starlette")

import numpy as np  # noqa: E402

from tagrouter.constraints import Allowed  # noqa: E402
from tagrouter.server.batching import RouteBatcher  # noqa: E402


def fits(queries: list[str]) -> Allowed:
    """Constraints that allow one model for ``queries``; the model's column says which query it is."""
    return Allowed(np.ones((len(queries), 1), dtype=bool), [{"of": q} for q in queries])


def ask(batcher: RouteBatcher, profile: str, queries: list[str]):
    """The batcher's decisions for one request of ``queries``."""
    return batcher.decide(profile, queries, fits(queries))


class RecordingRoute:
    """A route function that answers 'profile:query' and records each batch and its thread."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[tuple[str, list[str]]] = []
        self.threads: set[int] = set()
        self.fail_on = fail_on

    def __call__(self, profile: str, queries, fits: Allowed, earlier):
        assert len(fits.mask) == len(queries) == len(earlier)
        assert [r["of"] for r in fits.removed] == list(queries)  # each request's constraints, in order
        self.batches.append((profile, list(queries)))
        self.threads.add(threading.get_ident())
        if self.fail_on in queries:
            raise ValueError(f"cannot route {self.fail_on}")
        return [f"{profile}:{q}" for q in queries]


@pytest.mark.parametrize("in_threadpool", [False, True])
def test_concurrent_requests_share_one_batch_per_profile(in_threadpool: bool) -> None:
    route = RecordingRoute()

    async def scenario():
        batcher = RouteBatcher(route, in_threadpool=in_threadpool)
        together = await asyncio.gather(
            ask(batcher, "a", ["q1"]), ask(batcher, "a", ["q2", "q3"]), ask(batcher, "b", ["q4"])
        )
        alone = await ask(batcher, "a", ["q5"])
        return together, alone, threading.get_ident()

    together, alone, loop_thread = asyncio.run(scenario())
    assert together == [["a:q1"], ["a:q2", "a:q3"], ["b:q4"]]
    assert alone == ["a:q5"]
    assert route.batches == [("a", ["q1", "q2", "q3"]), ("b", ["q4"]), ("a", ["q5"])]
    assert (loop_thread in route.threads) is not in_threadpool


def test_a_bad_request_fails_alone_and_its_batch_neighbours_are_decided() -> None:
    route = RecordingRoute(fail_on="bad")

    async def scenario():
        batcher = RouteBatcher(route)
        together = await asyncio.gather(
            ask(batcher, "a", ["ok"]),
            ask(batcher, "a", ["bad"]),
            ask(batcher, "a", ["also", "fine"]),
            return_exceptions=True,
        )
        return together, await ask(batcher, "a", ["later"])

    together, later = asyncio.run(scenario())
    assert together[0] == ["a:ok"] and together[2] == ["a:also", "a:fine"]
    assert isinstance(together[1], ValueError) and "bad" in str(together[1])
    assert later == ["a:later"]
    # the shared batch failed once, then each request was decided alone
    assert route.batches[0] == ("a", ["ok", "bad", "also", "fine"])
    assert route.batches[1:4] == [("a", ["ok"]), ("a", ["bad"]), ("a", ["also", "fine"])]


def test_batches_with_more_text_than_the_threshold_are_routed_off_the_event_loop() -> None:
    route = RecordingRoute()

    async def scenario():
        batcher = RouteBatcher(route, thread_chars=100)
        small = await ask(batcher, "a", ["x" * 100])
        large = await ask(batcher, "a", ["y" * 101])
        return small, large, threading.get_ident()

    small, large, loop_thread = asyncio.run(scenario())
    assert small == ["a:" + "x" * 100] and large == ["a:" + "y" * 101]
    assert len(route.threads) == 2 and loop_thread in route.threads
