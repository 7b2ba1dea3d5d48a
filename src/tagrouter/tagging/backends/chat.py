"""What every text-generation backend shares: the prompts that ask for a query's tags, the chat turns
that carry them, the ``TextGenerator`` protocol and the error a backend raises."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tagrouter.errors import TagRouterError

#: The TagGenerator's prompt (from its model card), sent as the user turn after the default system message.
TAGGENERATOR_PROMPT = (
    "[System]\nYou are an expert text tag extractor. Your task is to identify key tags that readers should "
    "focus on while engaging with the user query below.\n[User Query]\n{query}\n"
)
#: System message for a general instruction-following LLM used as a tagger or teacher.
GENERAL_SYSTEM = (
    "You are an expert text tag extractor. Given a user query to an AI assistant, give 3 to 6 short tags "
    "(1 to 3 words each, lower case, in English) naming the task type, the domain and the key skills or "
    "topics that answering it needs. Answer with a JSON list of strings only."
)
#: Prompt styles: ``taggenerator`` (the fine-tuned TagGenerator) or ``general`` (any instruction LLM).
PROMPT_STYLES = ("taggenerator", "general")


class BackendError(TagRouterError):
    """A tagging backend failed (model not loadable, endpoint unreachable or answering with errors)."""


def chat_messages(query: str, style: str) -> list[dict[str, str]]:
    """The chat turns that ask for ``query``'s tags in prompt ``style`` (see :data:`PROMPT_STYLES`)."""
    if style == "taggenerator":
        return [{"role": "user", "content": TAGGENERATOR_PROMPT.format(query=query)}]
    if style == "general":
        return [{"role": "system", "content": GENERAL_SYSTEM}, {"role": "user", "content": query}]
    raise ValueError(f"unknown prompt style {style!r}; expected one of {', '.join(PROMPT_STYLES)}")


class TextGenerator(Protocol):
    """A backend: one generated answer (free text holding tags) per query, in order."""

    def generate(self, queries: Sequence[str]) -> list[str]: ...
