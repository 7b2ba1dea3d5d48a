"""What the router reads of an OpenAI chat-completions request: the text to route on and its :class:`Needs`.

Shared by the gateway and the LiteLLM plugin, so both read a request the same way: the body is validated
once as a :class:`ChatRequest`, and :func:`read_chat` reads from it, once, everything routing needs (a
:class:`ChatInput`). ``content`` is a string or a list of parts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag

from tagrouter.catalog import Modality
from tagrouter.constraints import Needs
from tagrouter.tokens import count_tokens

#: A visible character: anything but whitespace, control characters and the zero-width / format characters.
_VISIBLE = re.compile(
    "[^\\s\x00-\x1f\x7f-\x9f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0]"
)
#: Routing reads at most this many characters of a text (its first and last halves; see :func:`capped`).
MAX_ROUTING_CHARS = 4000
#: Characters of earlier user turns that :func:`earlier_text` keeps (the most recent ones).
EARLIER_CHARS = 2000
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


def _valid_unicode(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"text must be valid Unicode, but character {exc.start} is a lone surrogate "
            f"(U+{ord(text[exc.start]):04X})"
        ) from None
    return text


#: A string that encodes as UTF-8 (the tokenizer, SQLite and the upstreams need that).
Text = Annotated[str, AfterValidator(_valid_unicode)]


class ContentPart(BaseModel):
    """One part of multi-part message content; only ``text`` parts are routed on."""

    model_config = ConfigDict(extra="allow", strict=True)

    type: str
    text: Text | None = None


def _content_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "text"
    return "parts" if isinstance(value, list) else None


#: Message content: a string or a list of parts, told apart by type (so that an error in a part is named
#: as such, not as "not a string"); ``None`` is allowed separately.
Content = Annotated[
    Annotated[Text, Tag("text")] | Annotated[list[ContentPart], Tag("parts")],
    Discriminator(
        _content_kind,
        custom_error_type="content_type",
        custom_error_message="content must be a string, a list of content parts, or null",
    ),
]


class ChatMessage(BaseModel):
    """One message; fields other than ``role`` and ``content`` (``tool_calls``, ``name``...) are kept."""

    model_config = ConfigDict(extra="allow", strict=True)

    role: str
    content: Content | None = None

    def extra(self, name: str) -> Any:
        """The field ``name`` as sent, when it is not ``role`` or ``content`` (None when absent)."""
        return (self.model_extra or {}).get(name)


class ChatRequest(BaseModel):
    """The fields routing reads of a chat request, strictly typed (``user`` names a session: valid text
    only); every other field (``tools``, ``max_tokens``...) is kept as sent (``model_extra``); the whole
    body is passed to the upstream unchanged."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: Text | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    user: Text | None = None

    def extra(self, name: str) -> Any:
        """The field ``name`` as sent, when it is not one of the typed fields (None when absent)."""
        return (self.model_extra or {}).get(name)


@dataclass(frozen=True)
class ChatInput:
    """What routing reads of one chat request, read once (:func:`read_chat`): the last user turn's text
    (None when it has no visible text), the earlier user turns' text (None for a first turn) and what the
    request needs of a model."""

    query: str | None
    earlier: str | None
    needs: Needs


def read_chat(chat: ChatRequest, max_chars: int = MAX_ROUTING_CHARS) -> ChatInput:
    """Everything routing reads of ``chat``, each part computed once (``max_chars``: see :func:`capped`)."""
    return ChatInput(routing_text(chat.messages, max_chars), earlier_text(chat.messages), needs_of(chat))


def message_text(message: ChatMessage) -> str:
    """The text of one message: its string content, or the text of its text parts."""
    content = message.content
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    return "\n".join(part.text for part in content if part.type == "text" and part.text is not None)


def visible(text: str) -> bool:
    """Whether ``text`` holds a character other than whitespace, control and zero-width characters."""
    return _VISIBLE.search(text) is not None


def capped(text: str, max_chars: int) -> str:
    """``text``, or its first and last characters (``max_chars`` in all, a newline between) if longer."""
    if len(text) <= max_chars:
        return text
    head = (max_chars - 1) // 2
    return text[:head] + "\n" + text[len(text) - (max_chars - 1 - head) :]


def routing_text(messages: Sequence[ChatMessage], max_chars: int = MAX_ROUTING_CHARS) -> str | None:
    """The text the router decides on: the last user message's text, capped to ``max_chars``; None when
    it has no visible text, or there is no user message."""
    for message in reversed(messages):
        if message.role == "user":
            text = message_text(message)
            return capped(text, max_chars) if visible(text) else None
    return None


def earlier_text(messages: Sequence[ChatMessage], max_chars: int = EARLIER_CHARS) -> str | None:
    """The text of the user turns before the last user message (the most recent ``max_chars``
    characters of them), None for a first turn: what conversation-aware routing adds to the last turn."""
    turns = [message_text(m) for m in conversation_prefix(messages) if m.role == "user"]
    text = "\n\n".join(t for t in turns if t.strip())[-max_chars:]
    return text or None


def conversation_prefix(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """The messages before the last user message (empty for a first turn)."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].role == "user":
            return list(messages[:index])
    return list(messages)


def needs_of(chat: ChatRequest) -> Needs:
    """What a chat-completions request needs of a model: prompt tokens (all messages' text, see
    :mod:`tagrouter.tokens`, plus :data:`TOKENS_PER_MESSAGE` each; images and audio are not counted),
    the output it asks for (``max_completion_tokens`` or ``max_tokens``), its input modalities, tool
    calls (``tools``/``functions``, or tool turns in the messages) and JSON mode (``response_format``)."""
    modalities = {Modality.TEXT}
    tokens = 0
    uses_tools = bool(chat.extra("tools") or chat.extra("functions"))
    for message in chat.messages:
        tokens += count_tokens(message_text(message)) + TOKENS_PER_MESSAGE
        if isinstance(message.content, list):
            modalities |= {_PART_MODALITIES[p.type] for p in message.content if p.type in _PART_MODALITIES}
        uses_tools = uses_tools or message.role in ("tool", "function") or bool(message.extra("tool_calls"))
    response_format = chat.extra("response_format")
    json_mode = isinstance(response_format, dict) and response_format.get("type") in (
        "json_object",
        "json_schema",
    )
    max_output = chat.extra("max_completion_tokens") or chat.extra("max_tokens")
    return Needs(
        input_tokens=tokens,
        max_output_tokens=max_output if isinstance(max_output, int) and max_output > 0 else None,
        modalities=frozenset(modalities),
        tools=uses_tools,
        json_mode=json_mode,
    )
