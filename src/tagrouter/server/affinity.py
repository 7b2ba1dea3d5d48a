"""Session affinity: a conversation keeps its model for a while, unless it escalates.

A session is named by the client (the ``x-session-id`` header, else the body's ``user`` field) or, when it
sends neither, by a hash of the conversation's opening: its messages up to the first user message (the
system prompt and the first question), which every later turn resends unchanged. (Hashing all messages
before the last user message would change the key at every turn; following it would need each answer's
text, streams included.) Two conversations of one client key that open with the same messages share a
pin; clients that want them apart send a session id.

Sessions are scoped by client key: the same session id, ``user`` or opening sent with another key is
another session, so no client can pin, escalate or read another's conversation. A session id or ``user``
longer than ``max_session_id_chars`` is refused (the caller answers a 400); every key is stored as a
fixed-size digest of (client key, name), so each pin costs the same few hundred bytes whatever it is
called, and the store is bounded in bytes by its bound in count.

A pin lasts ``ttl_s`` seconds after its last use and ``max_turns`` turns. Escalation: a loss feedback on a
pinned request, or a failure of the pinned model's upstream, drops the pin and sets a floor for the
session: the cheapest model strictly dearer (output price, then input price) than the one that lost or
failed; when none is dearer, the model itself after a loss (and no new floor after a failure, so that the
other models can still answer). The floor only rises: it is kept while the session
lives (its turns are routed with it as ``min_model`` and pinned again), so a session never moves down
after a loss. Pins are kept in memory, at most ``max_sessions`` (least recently used dropped first); each
gateway process has its own.
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
from tagrouter.errors import DataError

#: The header that names a session.
SESSION_HEADER = "x-session-id"


@dataclass(frozen=True)
class Pin:
    """A session's model, how many turns it has served, when it expires and the session's floor."""

    model: str | None
    turns: int
    expires_at: float
    floor: str | None = None


def _digest(scope: str, name: bytes) -> str:
    return hashlib.sha256(scope.encode("utf-8", "replace") + b"\0" + name).hexdigest()[:32]


def session_key(
    headers: Mapping[str, str], chat: ChatRequest, scope: str = "", max_chars: int = 256
) -> str | None:
    """The session of a chat request of client ``scope`` (its key): ``id:…`` from the header or ``user``
    field, else ``opening:…`` from the conversation's opening (None without a user message); both a digest
    of the scope and the name. Raises :class:`DataError` naming the field for a name over ``max_chars``."""
    for field, explicit in ((SESSION_HEADER, headers.get(SESSION_HEADER)), ("user", chat.user)):
        if isinstance(explicit, str) and explicit:
            if len(explicit) > max_chars:
                raise DataError(
                    f"a session name is at most {max_chars} characters, got {len(explicit)}", field=field
                )
            return "id:" + _digest(scope, explicit.encode("utf-8", "replace"))
    messages = chat.messages
    first_user = next((i for i, m in enumerate(messages) if m.role == "user"), None)
    if first_user is None:
        return None
    opening = [m.model_dump(include={"role", "content"}) for m in messages[: first_user + 1]]
    canonical = json.dumps(opening, sort_keys=True, default=str).encode("utf-8", "replace")
    return "opening:" + _digest(scope, canonical)


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
        # request id -> (session, client scope), for feedback
        self._requests: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._lock = threading.Lock()
        self._price, self._dearer = _prices(catalog)

    def follow(self, catalog: Catalog) -> None:
        """Escalate by the prices of ``catalog`` from now on (a reload's); the sessions pinned to a model
        it drops, or floored by one, start afresh."""
        price, dearer = _prices(catalog)
        with self._lock:
            self._price, self._dearer = price, dearer
            for key in [k for k, p in self._pins.items() if {p.model, p.floor} - {None} - set(price)]:
                del self._pins[key]

    def __len__(self) -> int:
        return len(self._pins)

    def lookup(self, key: str) -> Pin | None:
        """The session's live pin or its floor (a pin with ``model`` None), None when it has neither."""
        with self._lock:
            pin = self._pins.get(key)
            if pin is None:
                return None
            if pin.expires_at <= self._clock():
                del self._pins[key]
                return None
            if pin.model is not None and pin.turns >= self.max_turns:
                if pin.floor is None:
                    del self._pins[key]
                    return None
                pin = self._pins[key] = replace(pin, model=None, turns=0)  # routed again, above its floor
            self._pins.move_to_end(key)
            return pin

    def pin(self, key: str, model: str, request_id: str, scope: str = "") -> None:
        """Record that the session's turn ``request_id`` (of client ``scope``) went to ``model`` (a new
        pin, or one more turn); the session's floor is kept."""
        with self._lock:
            before = self._pins.get(key)
            turns = before.turns + 1 if before is not None and before.model == model else 1
            floor = before.floor if before is not None else None
            self._pins[key] = Pin(model, turns, self._clock() + self.ttl_s, floor)
            self._pins.move_to_end(key)
            self._requests[request_id] = (key, scope)
            for kept in (self._pins, self._requests):
                while len(kept) > self.max_sessions:
                    kept.popitem(last=False)

    def lost(self, request_id: str, model: str, scope: str = "") -> None:
        """A loss feedback from client ``scope`` on request ``request_id``: escalate its session, if the
        request was that client's and its session is still on ``model``."""
        found = self._requests.get(request_id)
        if found is not None and found[1] == scope:
            self.escalate(found[0], model)

    def escalate(self, key: str, model: str, *, lost: bool = True) -> None:
        """``model`` lost (``lost``) or its upstream failed for the session: drop its pin and route its
        next turn above it, never below the floor it already has. After a loss of the dearest model the
        floor is that model; after a failure of it, the floor stays as it was (so that other models can
        still answer)."""
        with self._lock:
            before = self._pins.get(key)
            if before is None or before.model != model:
                return  # an old turn's feedback, or a session that moved on
            candidates = [self._dearer.get(model) or (model if lost else None), before.floor]
            floors = [m for m in candidates if m in self._price]  # not a model a reload dropped
            floor = max(floors, key=self._price.__getitem__) if floors else None
            self._pins[key] = replace(before, model=None, turns=0, floor=floor)


def _prices(catalog: Catalog) -> tuple[dict[str, tuple[float, float]], dict[str, str | None]]:
    """Each model's price key, and the cheapest strictly dearer model of each (None for the dearest)."""
    price = {m: catalog[m].price_key for m in catalog.names}
    by_price = sorted(catalog.names, key=price.__getitem__)
    dearer = {m: next((d for d in by_price if price[d] > price[m]), None) for m in by_price}
    return price, dearer
