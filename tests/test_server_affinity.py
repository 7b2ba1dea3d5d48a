"""Session pins: keys, expiry by time and turns, LRU bound, escalation; per-model rate limits."""

from tagrouter.catalog import Catalog
from tagrouter.chat import ChatRequest
from tagrouter.server.affinity import SessionPins, session_key
from tagrouter.server.limits import ModelLimits

CATALOG = Catalog.model_validate(
    {
        "models": [
            {"name": "cheap", "input_usd_per_1m": 0.1, "output_usd_per_1m": 0.2},
            {"name": "dear", "input_usd_per_1m": 5, "output_usd_per_1m": 15},
            {
                "name": "mid",
                "input_usd_per_1m": 1,
                "output_usd_per_1m": 2,
                "rate_limits": {"requests_per_minute": 2},
            },
        ]
    }
)


def chat(body: dict) -> ChatRequest:
    return ChatRequest.model_validate(body)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pins(clock: Clock, **options) -> SessionPins:
    return SessionPins(
        CATALOG, **{"ttl_s": 60, "max_turns": 3, "max_sessions": 100, "clock": clock, **options}
    )


def test_session_keys_from_header_user_or_the_conversation_opening():
    turn1 = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}
    turn2 = {
        "messages": [
            *turn1["messages"],
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "More"},
        ]
    }
    assert session_key({"x-session-id": "s1"}, chat({**turn1, "user": "u"})) == "id:s1"
    assert session_key({}, chat({**turn1, "user": "u"})) == "id:u"
    assert session_key({}, chat(turn1)) == session_key({}, chat(turn2)) and session_key(
        {}, chat(turn1)
    ).startswith("opening:")
    other = {"messages": [{"role": "user", "content": "Hi there"}]}
    assert session_key({}, chat(other)) != session_key({}, chat(turn1))
    assert session_key({}, chat({"messages": [{"role": "system", "content": "x"}]})) is None


def test_a_pin_lasts_its_ttl_and_its_turns_then_the_session_is_routed_again():
    clock = Clock()
    store = pins(clock)
    assert store.lookup("a") is None
    store.pin("a", "mid", "r1")
    clock.now += 59
    assert store.lookup("a").model == "mid"  # a use renews nothing: only a new turn (pin) does
    store.pin("a", "mid", "r-a")
    store.pin("a", "mid", "r-a")
    assert store.lookup("a") is None  # three turns served: routed again
    store.pin("b", "mid", "r-b")
    clock.now += 60
    assert store.lookup("b") is None  # expired


def test_memory_is_bounded_least_recently_used_first():
    store = pins(Clock(), max_sessions=2)
    store.pin("a", "mid", "r-a")
    store.pin("b", "mid", "r-b")
    store.lookup("a")
    store.pin("c", "mid", "r-c")
    assert len(store) == 2 and store.lookup("b") is None and store.lookup("a") is not None


def test_escalation_sets_a_floor_above_the_model_that_lost():
    store = pins(Clock())
    store.pin("a", "cheap", "r-a")
    store.escalate("a", "dear")  # not the session's model (an old turn): nothing changes
    assert store.lookup("a").model == "cheap"
    store.escalate("a", "cheap")
    assert (store.lookup("a").model, store.lookup("a").floor) == (None, "mid")
    store.pin("a", "dear", "r2")
    store.lost("r2", "dear")  # the dearest lost (by its request id): routed again, without a floor
    assert (store.lookup("a").model, store.lookup("a").floor) == (None, None)
    store.lost("unknown", "dear")


def test_a_model_at_its_rate_limit_is_saturated_for_a_minute():
    clock = Clock()
    limits = ModelLimits(CATALOG, clock)
    limits.record("mid", 10)
    limits.record("cheap", 10)  # no limit: not counted
    assert limits.saturated() == frozenset()
    limits.record("mid", 10)
    assert limits.saturated() == {"mid"}
    clock.now += 60
    assert limits.saturated() == frozenset()
