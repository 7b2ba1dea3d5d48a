"""Live router reloads: notice a new saved version of the router folder and load it off the event loop.

A save (``tagrouter fit``, ``update``, ``calibrate``, :meth:`TagRouter.save`) writes a new version folder
and then switches the folder's ``CURRENT`` file in one atomic rename (:mod:`tagrouter.artifact`). The
:class:`RouterWatcher` reads ``CURRENT`` every ``interval_s`` and, when it names another version, calls
the gateway's reload, which loads the version in a worker thread and swaps it in with one assignment
(see ``Gateway.reload`` in :mod:`tagrouter.server.app`): requests already routed finish on the old
router, later ones route on the new one, and a version that fails to load leaves the old one serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from tagrouter.artifact import CURRENT

log = logging.getLogger("tagrouter.server")


def current_version(folder: Path) -> str:
    """The version ``folder``'s ``CURRENT`` names now (``""`` when it has none, e.g. format version 1)."""
    try:
        return (folder / CURRENT).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


class RouterWatcher:
    """Polls ``folder/CURRENT`` and awaits ``reload()`` when it names a version other than the served one
    (``served()``) and than the last one it tried; a zero interval never polls (``POST /admin/reload``
    still works)."""

    def __init__(
        self,
        folder: Path,
        served: Callable[[], str],
        reload: Callable[[], Awaitable[object]],
        interval_s: float,
    ) -> None:
        self.folder, self._served, self._reload, self.interval_s = folder, served, reload, interval_s
        self._tried = ""  # a version that failed to load is not tried again until CURRENT changes
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start polling (call from the running event loop)."""
        if self.interval_s > 0:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="tagrouter-router-watcher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                version = current_version(self.folder)
                if version not in ("", self._served(), self._tried):
                    self._tried = version
                    await self._reload()
            except Exception:  # a reload that fails keeps the old router; it is logged and counted there
                log.exception("checking %s for a new router version failed", self.folder)
