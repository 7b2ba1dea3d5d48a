"""Session affinity: a conversation keeps its model for a while, unless it escalates.

A session is named by the client (the ``x-session-id`` header, else the body's ``user`` field) or, when it
sends neither, by a hash of the conversation's opening: its messages up to the first user message (the
system prompt and the first question), which every later turn resends unchanged. (Hashing all messages
before the last user message would change the key at every turn; following it would need each answer's
text, streams included.) Two conversations that open with the same messages share a pin; clients that
want them apart send a session id.

A pin lasts ``ttl_s`` seconds after its last use and ``max_turns`` turns. Escalation: a loss feedback on a
pinned request, or a failure of the pinned model's upstream, drops the pin and sets a floor for the
session, the next dearer model (output price, then input price) than the one that lost or failed; the next
turn is routed with that floor (``min_model``) and pinned again. Pins are kept in memory, at most
``max_sessions`` (least recently used dropped first); each gateway process has its own.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from tagrouter.catalog import Catalog
from tagrouter.chat import ChatRequest

#: The header that names a session.
SESSION_HEADER = "x-session-id"


@dataclass(frozen=True)
class Pin:
    """A session's model, how many turns it has served, when it expires and the session's floor."""

    model: str | None
    turns: int
    expires_at: float
    floor: str | None = None


def session_key(headers: Mapping[str, str], chat: ChatRequest) -> str | None:
    """The session of a chat request: ``id:…`` from the header or ``user`` field, else ``opening:…``
    from the conversation's opening (None without a user message)."""
    explicit = headers.get(SESSION_HEADER) or chat.extra("user")
    if isinstance(explicit, str) and explicit:
        return "id:" + explicit
    messages = chat.messages
    first_user = next((i for i, m in enumerate(messages) if m.role == "user"), None)
    if first_user is None:
        return None
    opening = [m.model_dump(include={"role", "content"}) for m in messages[: first_user + 1]]
    canonical = json.dumps(opening, sort_keys=True, default=str).encode("utf-8", "replace")
    return "opening:" + hashlib.sha256(canonical).hexdigest()[:32]


class SessionPins:
    """The pins of the sessions one gateway process has seen (thread-safe, bounded: LRU + TTL)."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        ttl_s: float,
        max_turns: int,
        max_sessions: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s, self.max_turns, self.max_sessions = ttl_s, max_turns, max_sessions
        self._clock = clock
        self._pins: OrderedDict[str, Pin] = OrderedDict()
        self._requests: OrderedDict[str, str] = OrderedDict()  # request id -> session, for feedback
        self._lock = threading.Lock()
        by_price = sorted(catalog.names, key=lambda m: catalog[m].price_key)
        self._next_dearer = {
            m: by_price[i + 1] if i + 1 < len(by_price) else None for i, m in enumerate(by_price)
        }

    def __len__(self) -> int:
        return len(self._pins)

    def lookup(self, key: str) -> Pin | None:
        """The session's live pin or its floor (a pin with ``model`` None), None when it has neither."""
        with self._lock:
            pin = self._pins.get(key)
            if pin is None:
                return None
            if pin.expires_at <= self._clock() or (pin.model is not None and pin.turns >= self.max_turns):
                del self._pins[key]
                return None
            self._pins.move_to_end(key)
            return pin

    def pin(self, key: str, model: str, request_id: str) -> None:
        """Record that the session's turn ``request_id`` went to ``model`` (a new pin, or one more turn)."""
        with self._lock:
            before = self._pins.get(key)
            turns = before.turns + 1 if before is not None and before.model == model else 1
            self._pins[key] = Pin(model, turns, self._clock() + self.ttl_s)
            self._pins.move_to_end(key)
            self._requests[request_id] = key
            for kept in (self._pins, self._requests):
                while len(kept) > self.max_sessions:
                    kept.popitem(last=False)

    def lost(self, request_id: str, model: str) -> None:
        """A loss feedback on request ``request_id``: escalate its session, if it is still on ``model``."""
        key = self._requests.get(request_id)
        if key is not None:
            self.escalate(key, model)

    def escalate(self, key: str, model: str) -> None:
        """``model`` lost or failed for the session: drop its pin and route its next turn above it."""
        with self._lock:
            before = self._pins.get(key)
            if before is None or before.model != model:
                return  # an old turn's feedback, or a session that moved on
            self._pins[key] = replace(before, model=None, turns=0, floor=self._next_dearer[model])
