"""The retry policy of every HTTP client that calls a model: which statuses to retry, and how long to wait."""

from __future__ import annotations

from typing import Any

#: Statuses worth another attempt: rate limits, timeouts, conflicts and server errors.
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 30.0


def backoff_delay(base_s: float, attempt: int) -> float:
    """Exponential backoff: ``base_s`` doubled per attempt (attempts count from 0), at most 30 s."""
    return min(base_s * 2**attempt, MAX_BACKOFF_S)


def retry_after(response: Any, default: float) -> float:
    """The server's ``Retry-After`` in seconds (capped at 30 s), or ``default``."""
    try:
        return min(max(float(response.headers.get("retry-after", default)), 0.0), MAX_BACKOFF_S)
    except ValueError:
        return default
