"""Micro-batching of routing: the queries that arrive in one turn of the event loop are decided together.

``TagRouter.route_batch`` costs far less per query on a batch than one query at a time (one embedding call,
one score product). Under load many requests wait to be routed at the same moment; the batcher gives them
one ``route_batch`` call per profile. A lone request is decided one loop turn later, which costs
microseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from starlette.concurrency import run_in_threadpool

from tagrouter.constraints import Needs
from tagrouter.router import Decision

Route = Callable[[str, Sequence[str], Sequence[Needs], Sequence[str | None]], list[Decision]]
_Waiting = list[tuple[list[str], list[Needs], list[str | None], asyncio.Future[list[Decision]]]]


class RouteBatcher:
    """``await batcher.decide(profile, queries, needs, earlier)``: the decisions for ``queries`` (under
    their ``needs``, after their conversations' ``earlier`` turns; default none), made in a shared batch.

    ``route(profile, queries, needs, earlier)`` makes the decisions; with ``in_threadpool`` it runs in a worker thread (for
    slow taggers), and the queries that arrive meanwhile form the next batch.
    """

    def __init__(self, route: Route, *, in_threadpool: bool = False) -> None:
        self._route = route
        self._in_threadpool = in_threadpool
        self._waiting: dict[str, _Waiting] = {}
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def decide(
        self,
        profile: str,
        queries: list[str],
        needs: list[Needs] | None = None,
        earlier: list[str | None] | None = None,
    ) -> list[Decision]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Decision]] = loop.create_future()
        item = (queries, needs or [Needs()] * len(queries), earlier or [None] * len(queries), future)
        self._waiting.setdefault(profile, []).append(item)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        waiting, self._waiting = self._waiting, {}
        for profile, items in waiting.items():
            if self._in_threadpool:
                task = asyncio.ensure_future(self._decide_in_thread(profile, items))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                self._resolve(items, self._decide_now(profile, items))

    def _decide_now(self, profile: str, items: _Waiting) -> list[Decision] | Exception:
        try:
            queries = [q for batch, _, _, _ in items for q in batch]
            needs = [n for _, batch, _, _ in items for n in batch]
            return self._route(profile, queries, needs, [e for _, _, batch, _ in items for e in batch])
        except Exception as exc:  # every waiting request gets the error
            return exc

    async def _decide_in_thread(self, profile: str, items: _Waiting) -> None:
        self._resolve(items, await run_in_threadpool(self._decide_now, profile, items))

    @staticmethod
    def _resolve(items: _Waiting, decisions: list[Decision] | Exception) -> None:
        start = 0
        for queries, _, _, future in items:
            end = start + len(queries)
            if not future.done():  # (a cancelled request's future is done already)
                if isinstance(decisions, Exception):
                    future.set_exception(decisions)
                else:
                    future.set_result(decisions[start:end])
            start = end
