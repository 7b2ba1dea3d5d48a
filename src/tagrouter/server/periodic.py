"""A task of the gateway's event loop that runs one step every ``interval_s`` (the replicas' feedback
follower, the router-version watcher): a zero interval never runs; a step that fails is logged and the
next one runs on time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("tagrouter.server")


class PeriodicTask:
    """Subclasses give :meth:`step` and :meth:`failure` (what the log says when a step fails) and call
    :meth:`start_steps` from the running event loop; ``sleep`` waits out the interval (tests pass one on
    a clock they move)."""

    def __init__(
        self, name: str, interval_s: float, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> None:
        self.interval_s = interval_s
        self._name, self._sleep = name, sleep
        self._task: asyncio.Task[None] | None = None

    async def step(self) -> None:
        raise NotImplementedError

    def failure(self) -> str:
        raise NotImplementedError

    def start_steps(self) -> None:
        if self.interval_s > 0:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self._sleep(self.interval_s)
            try:
                await self.step()
            except Exception:  # logged; the next step runs at the next interval
                log.exception(self.failure())
