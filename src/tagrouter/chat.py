"""What the router reads of an OpenAI chat-completions request: the text to route on and its :class:`Needs`.

Shared by the gateway and the LiteLLM plugin, so both route a request the same way. Messages are the
request's JSON objects (``{"role", "content", ...}``); ``content`` is a string or a list of parts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from tagrouter.catalog import Modality
from tagrouter.constraints import Needs
from tagrouter.tokens import count_tokens

Message = Mapping[str, Any]

#: A visible character: anything but whitespace, control characters and the zero-width / format characters.
_VISIBLE = re.compile(
    "[^\\s\x00-\x1f\x7f-\x9f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0]"
)
#: Routing reads at most this many characters of a text (its first and last halves; see :func:`capped`).
MAX_ROUTING_CHARS = 4000
#: Characters of earlier user turns that :func:`earlier_text` keeps (the most recent ones).
EARLIER_CHARS = 2000
#: The weight of the earlier turns' scores in conversation-aware routing (measured on MT-bench's second
#: turns: ``scripts/bench_conversation.py``, README *Conversations*).
EARLIER_WEIGHT = 0.3
#: Tokens a chat format adds per message (role and separators; OpenAI documents 3 to 4).
TOKENS_PER_MESSAGE = 4
#: Content part types that carry an image or audio.
_PART_MODALITIES = {
    "image_url": Modality.IMAGE,
    "image": Modality.IMAGE,
    "input_image": Modality.IMAGE,
    "input_audio": Modality.AUDIO,
    "audio": Modality.AUDIO,
}


def message_text(message: Message) -> str:
    """The text of one message: its string content, or the text of its text parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str)
        )
    return ""


def visible(text: str) -> bool:
    """Whether ``text`` holds a character other than whitespace, control and zero-width characters."""
    return _VISIBLE.search(text) is not None


def capped(text: str, max_chars: int) -> str:
    """``text``, or its first and last characters (``max_chars`` in all, a newline between) if longer."""
    if len(text) <= max_chars:
        return text
    head = (max_chars - 1) // 2
    return text[:head] + "\n" + text[len(text) - (max_chars - 1 - head) :]


def routing_text(messages: Sequence[Message], max_chars: int = MAX_ROUTING_CHARS) -> str | None:
    """The text the router decides on: the last user message's text, capped to ``max_chars``; None when
    it has no visible text, or there is no user message."""
    for message in reversed(messages):
        if message.get("role") == "user":
            text = message_text(message)
            return capped(text, max_chars) if visible(text) else None
    return None


def earlier_text(messages: Sequence[Message], max_chars: int = EARLIER_CHARS) -> str | None:
    """The text of the user turns before the last user message (the most recent ``max_chars``
    characters of them), None for a first turn: what conversation-aware routing adds to the last turn."""
    turns = [message_text(m) for m in conversation_prefix(messages) if m.get("role") == "user"]
    text = "\n\n".join(t for t in turns if t.strip())[-max_chars:]
    return text or None


def conversation_prefix(messages: Sequence[Message]) -> list[Message]:
    """The messages before the last user message (empty for a first turn)."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            return list(messages[:index])
    return list(messages)


def needs_of(body: Mapping[str, Any]) -> Needs:
    """What a chat-completions request needs of a model: prompt tokens (all messages' text, see
    :mod:`tagrouter.tokens`, plus :data:`TOKENS_PER_MESSAGE` each; images and audio are not counted),
    the output it asks for (``max_completion_tokens`` or ``max_tokens``), its input modalities, tool
    calls (``tools``/``functions``, or tool turns in the messages) and JSON mode (``response_format``)."""
    messages = body.get("messages") or []
    modalities = {Modality.TEXT}
    tokens = 0
    uses_tools = bool(body.get("tools") or body.get("functions"))
    for message in messages:
        tokens += count_tokens(message_text(message)) + TOKENS_PER_MESSAGE
        content = message.get("content")
        if isinstance(content, list):
            modalities |= {
                _PART_MODALITIES[p["type"]]
                for p in content
                if isinstance(p, Mapping) and p.get("type") in _PART_MODALITIES
            }
        uses_tools = (
            uses_tools or message.get("role") in ("tool", "function") or bool(message.get("tool_calls"))
        )
    response_format = body.get("response_format")
    json_mode = isinstance(response_format, Mapping) and response_format.get("type") in (
        "json_object",
        "json_schema",
    )
    max_output = body.get("max_completion_tokens") or body.get("max_tokens")
    return Needs(
        input_tokens=tokens,
        max_output_tokens=max_output if isinstance(max_output, int) and max_output > 0 else None,
        modalities=frozenset(modalities),
        tools=uses_tools,
        json_mode=json_mode,
    )
