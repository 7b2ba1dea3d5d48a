"""Per-model rate limits of the catalogue (``rate_limits``): which models have used up this minute.

Each routed request counts against its model: one request and its estimated prompt tokens. A model whose
requests or tokens over the last 60 seconds reach its limit is left out of routing (as a hard constraint:
neither chosen nor a fallback) until the window slides past. Counts are per gateway process.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from tagrouter.catalog import Catalog, RateLimits

WINDOW_S = 60.0


class ModelLimits:
    """Sliding one-minute counts of the models that have rate limits (thread-safe)."""

    def __init__(self, catalog: Catalog, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits: dict[str, RateLimits] = {c.name: c.rate_limits for c in catalog.models if c.rate_limits}
        self._used: dict[str, deque[tuple[float, int]]] = {name: deque() for name in self._limits}
        self._clock = clock
        self._lock = threading.Lock()

    def for_catalog(self, catalog: Catalog) -> ModelLimits:
        """The limits of another catalogue (a reload's), keeping this minute's counts of the models that
        are still limited (shared, under one lock, with the requests still in flight here)."""
        limits = ModelLimits(catalog, self._clock)
        limits._lock = self._lock
        limits._used = {name: self._used.get(name, deque()) for name in limits._limits}
        return limits

    def tracks(self, model: str) -> bool:
        """Whether ``model`` has a rate limit (only those are counted)."""
        return model in self._limits

    def record(self, model: str, tokens: int) -> None:
        """Count one request of ``tokens`` prompt tokens against ``model``."""
        if self.tracks(model):
            with self._lock:
                self._used[model].append((self._clock(), tokens))

    def saturated(self) -> frozenset[str]:
        """The models at one of their limits now."""
        if not self._limits:
            return frozenset()
        start = self._clock() - WINDOW_S
        full = set()
        with self._lock:
            for name, used in self._used.items():
                while used and used[0][0] <= start:
                    used.popleft()
                limit = self._limits[name]
                requests = limit.requests_per_minute is not None and len(used) >= limit.requests_per_minute
                tokens = (
                    limit.tokens_per_minute is not None and sum(t for _, t in used) >= limit.tokens_per_minute
                )
                if requests or tokens:
                    full.add(name)
        return frozenset(full)
