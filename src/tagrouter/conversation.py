"""How a conversation's earlier user turns count in the scores of its last message.

A query may come with the text of the user turns before it (a chat request's earlier turns,
:func:`tagrouter.chat.earlier_text`; a history record's ``earlier`` field). A :class:`Conversation` says how
the router scores such a query:

- ``last``: the last message alone (the earlier turns are ignored);
- ``weighted``: (1 − w) × score(last message) + w × score(earlier turns), each scored by its own tags;
- ``concatenated``: the score of the earlier turns' text and the last message joined (:func:`joined`), tagged
  as one text.

In every mode the tag table counts the tags of the record's own query (the last message): a decision's
tags, which the live learner counts, are always the last message's. The self-tuning fit chooses the mode
from :data:`CANDIDATES` by inner cross-validation where the history has conversations
(:mod:`tagrouter.tuning`) and saves it with the router; a router without a choice uses :data:`FALLBACK`,
the best of the candidates on MT-bench's second turns (``scripts/bench_conversation.py``, README
*Conversations*).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tagrouter.errors import DataError

Mode = Literal["last", "weighted", "concatenated"]
MODES: tuple[str, ...] = ("last", "weighted", "concatenated")
#: The weights of the earlier turns that the fit tries (evenly spaced over the open interval).
WEIGHTS = (0.25, 0.5, 0.75)


@dataclass(frozen=True)
class Conversation:
    """One way of counting the earlier turns (see the module docstring); ``weight`` only for
    ``weighted``, where it is in (0, 1]."""

    mode: Mode
    weight: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise DataError(
                f"unknown conversation mode {self.mode!r}: expected one of {', '.join(MODES)}",
                field="conversation",
            )
        if self.mode == "weighted" and not 0.0 < self.weight <= 1.0:
            raise DataError(
                f"a weighted conversation needs a weight in (0, 1], got {self.weight!r}", field="conversation"
            )
        if self.mode != "weighted" and self.weight != 0.0:
            raise DataError(f"the {self.mode} conversation mode takes no weight", field="conversation")

    @classmethod
    def weighted(cls, weight: float) -> Conversation:
        """The weighted mode with ``weight``; 0 is the last message only."""
        return cls("last") if weight == 0 else cls("weighted", float(weight))

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "weight": self.weight}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Conversation:
        return cls(raw["mode"], float(raw.get("weight", 0.0)))

    def describe(self) -> str:
        """In words, for ``fit`` and ``inspect``."""
        if self.mode == "weighted":
            return f"weighted: {1 - self.weight:g} × score(last message) + {self.weight:g} × score(earlier turns)"
        if self.mode == "concatenated":
            return "earlier turns and last message, concatenated"
        return "the last message only"


#: The modes the fit chooses from, in order of preference on a tie (the last message first).
CANDIDATES: tuple[Conversation, ...] = (
    Conversation("last"),
    *(Conversation("weighted", w) for w in WEIGHTS),
    Conversation("concatenated"),
)
#: A router without a choice: the best of :data:`CANDIDATES` on MT-bench's second turns (README).
FALLBACK = Conversation("concatenated")


def joined(earlier: str, query: str) -> str:
    """The text the concatenated mode tags: the earlier turns, a blank line, the last message."""
    return f"{earlier}\n\n{query}"


#: What the gateway's ``conversation_weight`` and the LiteLLM plugin's option take besides a number.
Setting = float | Literal["router", "last", "concatenated"]


def from_setting(setting: Setting) -> Conversation | None:
    """The conversation mode a setting names: ``"router"``, the router's own (None); a number w in [0, 1],
    the weighted mode (0: the last message only); ``"last"`` or ``"concatenated"``, that mode."""
    if setting == "router":
        return None
    if isinstance(setting, str):
        if setting not in ("last", "concatenated"):
            raise DataError(
                f"conversation setting {setting!r}: expected 'router', 'last', 'concatenated' or a weight",
                field="conversation_weight",
            )
        return Conversation(setting)
    return Conversation.weighted(float(setting))
