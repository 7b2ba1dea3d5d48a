"""A dollar budget that refuses a call before it could be exceeded.

Each call reserves its worst-case cost first (:meth:`ChatTarget.worst_case_cost`: prompt bytes and
``max_tokens``); the reservation is replaced by the real cost when the answer arrives. What is spent plus
what is reserved never passes the limit, so the calls in flight together can never overspend it either.
"""

from __future__ import annotations

from tagrouter.errors import TagRouterError


class BudgetExhausted(TagRouterError):
    """The next call's worst-case cost does not fit in what is left of the budget."""


class Budget:
    """``limit_usd`` dollars (None: no limit); once one call is refused, every later call is refused too,
    so that a run stops instead of picking cheaper calls out of order."""

    def __init__(self, limit_usd: float | None = None) -> None:
        self.limit_usd = limit_usd
        self.spent = 0.0
        self.reserved = 0.0
        self.exhausted = False

    def reserve(self, usd: float) -> None:
        """Hold ``usd`` for a call, or raise :class:`BudgetExhausted`."""
        if self.exhausted or (
            self.limit_usd is not None and self.spent + self.reserved + usd > self.limit_usd
        ):
            self.exhausted = True
            raise BudgetExhausted(
                f"the next call could cost up to ${usd:.6f}; with ${self.spent:.6f} spent and "
                f"${self.reserved:.6f} held for calls in flight, that would pass the budget of "
                f"${self.limit_usd:.6f}"
            )
        self.reserved += usd

    def settle(self, reserved: float, actual: float) -> None:
        """Replace a reservation by the call's real cost (0 for a call that failed)."""
        self.reserved = max(self.reserved - reserved, 0.0)
        self.spent += actual
