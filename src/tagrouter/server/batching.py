"""Micro-batching of routing: the queries that arrive in one turn of the event loop are decided together.

``TagRouter.route_batch`` costs far less per query on a batch than one query at a time (one embedding call,
one score product). Under load many requests wait to be routed at the same moment; the batcher gives them
one ``route_batch`` call per profile. A lone request is decided one loop turn later, which costs
microseconds.

Each request may name the router that decides it (``route``; default: the batcher's): a batch holds the
requests of one router and one profile, so a reload never mixes two routers' requests in one batch.

Requests are isolated: when a batch fails, each of its requests is decided alone, so that only the one
at fault gets the error. A batch with more routing text than ``thread_chars`` characters is routed in a
worker thread, so that the event loop keeps serving while it is tagged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from tagrouter.constraints import Allowed
from tagrouter.live import LiveDecision

Route = Callable[[str, Sequence[str], Allowed, Sequence[str | None], Sequence[bool]], list[LiveDecision]]
_Outcome = list[LiveDecision] | Exception


@dataclass(frozen=True)
class _Request:
    """One waiting request: its queries, the models they may go to, their earlier turns, and the future
    of its decisions."""

    queries: list[str]
    fits: Allowed
    earlier: list[str | None]
    explore: list[bool]
    future: asyncio.Future[list[LiveDecision]]


_Waiting = list[_Request]


class RouteBatcher:
    """``await batcher.decide(profile, queries, fits, earlier)``: the decisions for ``queries`` (among the
    models ``fits`` allows them, after their conversations' ``earlier`` turns; default none), made in a
    shared batch.

    ``route(profile, queries, fits, earlier, explore)`` makes the decisions (``fits`` of the whole batch,
    ``explore``: whether each query may explore); with
    ``in_threadpool`` (or for a batch of more than ``thread_chars`` characters) it runs in a worker
    thread, and the queries that arrive meanwhile form the next batch.
    """

    def __init__(self, route: Route, *, in_threadpool: bool = False, thread_chars: int | None = None) -> None:
        self._route = route
        self._in_threadpool = in_threadpool
        self._thread_chars = thread_chars
        self._waiting: dict[tuple[Route, str], _Waiting] = {}
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def decide(
        self,
        profile: str,
        queries: list[str],
        fits: Allowed,
        earlier: list[str | None] | None = None,
        explore: bool = True,
        route: Route | None = None,
    ) -> list[LiveDecision]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[LiveDecision]] = loop.create_future()
        request = _Request(queries, fits, earlier or [None] * len(queries), [explore] * len(queries), future)
        self._waiting.setdefault((route or self._route, profile), []).append(request)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        waiting, self._waiting = self._waiting, {}
        for (route, profile), items in waiting.items():
            if self._in_threadpool or self._large(items):
                task = asyncio.ensure_future(self._decide_in_thread(route, profile, items))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                self._resolve(items, self._decide(route, profile, items))

    def _large(self, items: _Waiting) -> bool:
        if self._thread_chars is None:
            return False
        return sum(len(q) for item in items for q in item.queries) > self._thread_chars

    def _decide(self, route: Route, profile: str, items: _Waiting) -> list[_Outcome]:
        """One outcome per waiting request: its decisions, or the error of routing it alone."""
        try:
            decisions = route(
                profile,
                [q for item in items for q in item.queries],
                items[0].fits if len(items) == 1 else Allowed.stacked([item.fits for item in items]),
                [e for item in items for e in item.earlier],
                [x for item in items for x in item.explore],
            )
        except Exception as exc:
            if len(items) == 1:
                return [exc]
            return [
                self._decide(route, profile, [item])[0] for item in items
            ]  # each alone: only the bad one fails
        outcomes: list[_Outcome] = []
        start = 0
        for item in items:
            outcomes.append(decisions[start : start + len(item.queries)])
            start += len(item.queries)
        return outcomes

    async def _decide_in_thread(self, route: Route, profile: str, items: _Waiting) -> None:
        self._resolve(items, await run_in_threadpool(self._decide, route, profile, items))

    @staticmethod
    def _resolve(items: _Waiting, outcomes: list[_Outcome]) -> None:
        for future, outcome in zip((item.future for item in items), outcomes, strict=True):
            if future.done():  # a cancelled request's future is done already
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
