"""What the router reads of a chat request: routing text, earlier turns, needs; conversation-aware scores."""

from dataclasses import replace

import numpy as np
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
from tagrouter.conversation import FALLBACK, Conversation, joined
from tagrouter.errors import DataError
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
    _, mixed = example_router.score_batch([last, last], [earlier, None], Conversation.weighted(0.3))
    assert mixed[0] == pytest.approx(0.7 * own[0] + 0.3 * before[0])
    assert mixed[1] == pytest.approx(own[0])  # a first turn scores as before
    decision = example_router.route_batch([last], earlier=[earlier], conversation=Conversation.weighted(0.3))[
        0
    ]
    assert decision.tags == example_router.route(last).tags  # tags: the last turn's
    assert list(decision.scores.values()) == pytest.approx(mixed[0].tolist())
    _, alone = example_router.score_batch([last], [earlier], Conversation("last"))
    assert alone[0] == pytest.approx(own[0])


def test_concatenated_conversations_score_the_joined_text(example_router):
    last, earlier = "Now in French.", CONVERSATION[1]["content"]
    _, together = example_router.score_batch([joined(earlier, last)])
    _, scores = example_router.score_batch([last, last], [earlier, None], Conversation("concatenated"))
    _, own = example_router.score_batch([last])
    assert scores[0] == pytest.approx(together[0]) and scores[1] == pytest.approx(own[0])
    assert not np.allclose(together[0], own[0])  # the earlier turn changes the scores
    decision = example_router.route_batch(
        [last], earlier=[earlier], conversation=Conversation("concatenated")
    )[0]
    assert decision.tags == example_router.route(last).tags


def test_a_router_without_a_choice_uses_the_measured_fallback(example_router):
    last, earlier = "Now in French.", CONVERSATION[1]["content"]
    assert example_router.model.conversation is None and example_router.model.conversation_rule == FALLBACK
    _, default = example_router.score_batch([last], [earlier])
    _, fallback = example_router.score_batch([last], [earlier], FALLBACK)
    assert default == pytest.approx(fallback)
    chosen = replace(example_router.model, conversation=Conversation("last"))
    _, own = chosen.score([last])
    assert chosen.score([last], [earlier])[1] == pytest.approx(own)


@pytest.mark.parametrize(
    "mode, weight", [("weighted", 0.0), ("weighted", 1.5), ("last", 0.3), ("summary", 0.0)]
)
def test_a_bad_conversation_mode_says_what_is_expected(mode, weight):
    with pytest.raises(DataError, match="conversation|weight"):
        Conversation(mode, weight)
