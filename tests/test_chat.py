"""What the router reads of a chat request: routing text, earlier turns, needs; conversation-aware scores."""

import pytest

from tagrouter.catalog import Modality
from tagrouter.chat import (
    TOKENS_PER_MESSAGE,
    ChatMessage,
    ChatRequest,
    earlier_text,
    needs_of,
    read_chat,
    routing_text,
)
from tagrouter.tokens import count_tokens

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Write a Python function that sorts a list of numbers."},
    {"role": "assistant", "content": "def sort(xs): return sorted(xs)"},
    {"role": "user", "content": [{"type": "text", "text": "Now in French."}]},
]


def chat(body: dict) -> ChatRequest:
    return ChatRequest.model_validate(body)


def messages(raw: list[dict]) -> list[ChatMessage]:
    return [ChatMessage.model_validate(m) for m in raw]


def test_routing_text_and_earlier_turns():
    assert routing_text(messages(CONVERSATION)) == "Now in French."
    assert earlier_text(messages(CONVERSATION)) == CONVERSATION[1]["content"]
    assert earlier_text(messages(CONVERSATION), max_chars=6) == "mbers."  # the most recent characters
    assert earlier_text(messages(CONVERSATION[:2])) is None
    assert routing_text(messages([{"role": "user", "content": "  "}])) is None and routing_text([]) is None


def test_read_chat_reads_text_earlier_turns_and_needs_once(monkeypatch):
    from tagrouter import chat as chat_module

    calls = []
    original = chat_module.needs_of
    monkeypatch.setattr(chat_module, "needs_of", lambda c: calls.append(c) or original(c))
    request = chat({"messages": CONVERSATION, "max_tokens": 7})
    read = read_chat(request, max_chars=5)
    assert (read.query, read.earlier) == ("No\nh.", CONVERSATION[1]["content"])  # capped to 5 characters
    assert read.needs == original(request) and read.needs.max_output_tokens == 7
    assert calls == [request]


def test_needs_of_a_request():
    image = {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
    body = {
        "messages": [
            *CONVERSATION,
            {"role": "user", "content": [{"type": "text", "text": "And this?"}, image]},
        ],
        "max_tokens": 50,
        "response_format": {"type": "json_object"},
    }
    needs = needs_of(chat(body))
    texts = [
        "Be brief.",
        CONVERSATION[1]["content"],
        CONVERSATION[2]["content"],
        "Now in French.",
        "And this?",
    ]
    assert needs.input_tokens == sum(count_tokens(t) for t in texts) + 5 * TOKENS_PER_MESSAGE
    assert needs.modalities == {Modality.TEXT, Modality.IMAGE} and needs.json_mode and not needs.tools
    assert needs.max_output_tokens == 50
    assert needs_of(chat({"messages": CONVERSATION, "tools": [{"type": "function"}]})).tools
    tool_turn = [*CONVERSATION, {"role": "tool", "tool_call_id": "1", "content": "42"}]
    assert needs_of(chat({"messages": tool_turn})).tools


def test_conversation_aware_scores_weigh_the_earlier_turns(example_router):
    last, earlier = "Now in French.", CONVERSATION[1]["content"]
    _, own = example_router.score_batch([last])
    _, before = example_router.score_batch([earlier])
    _, mixed = example_router.score_batch([last, last], [earlier, None], 0.3)
    assert mixed[0] == pytest.approx(0.7 * own[0] + 0.3 * before[0])
    assert mixed[1] == pytest.approx(own[0])  # a first turn scores as before
    decision = example_router.route_batch([last], earlier=[earlier], earlier_weight=0.3)[0]
    assert decision.tags == example_router.route(last).tags  # tags: the last turn's
    assert list(decision.scores.values()) == pytest.approx(mixed[0].tolist())
