"""Capabilities in the catalogue are hard constraints of routing: never chosen, never a fallback."""

import numpy as np
import pytest
from conftest import capable_router

from tagrouter.catalog import Catalog, Modality
from tagrouter.constraints import Needs, UnroutableError
from tagrouter.deciding import Decider, Rule, choose
from tagrouter.errors import DataError
from tagrouter.router import TagRouter
from tagrouter.tokens import count_tokens, estimate_tokens, tokenizer_name

QUERIES = [
    "Write a Python function that sorts a list of numbers.",
    "Hello there!",
    "Prove that 17 is prime.",
    "Explain the causes of the French revolution in detail.",
]


@pytest.fixture()
def dearest_wins(example_router) -> TagRouter:
    """The example router under a policy that would send every query to the dearest model (large-api)."""
    router = example_router.with_decider(Decider(Rule.UTILITY, -1e9))
    assert {d.model for d in router.route_batch(QUERIES)} == {"large-api"}
    return router


def test_an_image_request_never_reaches_a_text_only_model(dearest_wins):
    router = capable_router(dearest_wins, **{"mid-70b": {"modalities": ["text", "image"]}})
    needs = Needs(modalities=frozenset({Modality.TEXT, Modality.IMAGE}))
    for decision in router.route_batch(QUERIES, [needs] * len(QUERIES)):
        assert decision.model == "mid-70b" and decision.ranking == ["mid-70b"]
        assert decision.removed == {"small-7b": "no image input", "large-api": "no image input"}
        assert "removed: small-7b (no image input)" in decision.reason
    plain = router.route(QUERIES[0])  # a text request still goes to the dearest, with every fallback
    assert plain.model == "large-api" and len(plain.ranking) == 3 and plain.removed == {}


def test_an_over_long_prompt_never_reaches_a_model_whose_window_it_exceeds(dearest_wins):
    router = capable_router(dearest_wins, **{"large-api": {"context_window": 1000}})
    short, long = Needs(input_tokens=900), Needs(input_tokens=900, max_output_tokens=200)
    decisions = router.route_batch(QUERIES[:2], [short, long])
    assert decisions[0].model == "large-api"
    assert "large-api" not in decisions[1].ranking and decisions[1].model == "mid-70b"
    assert decisions[1].removed == {"large-api": "context window 1000 < 1100 tokens"}
    capped = capable_router(dearest_wins, **{"large-api": {"max_output_tokens": 100}})
    assert capped.route(QUERIES[0], Needs(max_output_tokens=101)).model == "mid-70b"


def test_a_tool_call_only_reaches_tool_capable_models(dearest_wins):
    router = capable_router(
        dearest_wins,
        **{"large-api": {"tools": False}, "mid-70b": {"tools": False}, "small-7b": {"tools": True}},
    )
    for decision in router.route_batch(QUERIES, [Needs(tools=True)] * len(QUERIES)):
        assert decision.ranking == ["small-7b"]
    undeclared = capable_router(dearest_wins, **{"mid-70b": {"tools": False}})  # None: not checked
    assert undeclared.route(QUERIES[0], Needs(tools=True)).ranking == ["large-api", "small-7b"]
    no_json = capable_router(dearest_wins, **{"large-api": {"json_mode": False}})
    assert no_json.route(QUERIES[0], Needs(json_mode=True)).removed == {"large-api": "no JSON mode"}


def test_client_limits_exclude_floor_and_cost_ceiling(dearest_wins, example_router):
    decision = dearest_wins.route(QUERIES[0], Needs(exclude=frozenset({"large-api"})))
    assert decision.model == "mid-70b" and decision.removed == {"large-api": "excluded"}
    cheapest = example_router.with_decider(Decider(Rule.UTILITY, 1e9))  # always the cheapest
    assert cheapest.route(QUERIES[0]).model == "small-7b"
    assert cheapest.route(QUERIES[0], Needs(min_model="mid-70b")).model == "mid-70b"
    costs = dearest_wins.route(QUERIES[0]).expected_costs
    ceiling = (costs["mid-70b"] + costs["large-api"]) / 2
    assert dearest_wins.route(QUERIES[0], Needs(max_cost_usd=ceiling)).model == "mid-70b"


def test_no_model_fits_is_a_clear_error(dearest_wins):
    with pytest.raises(UnroutableError, match="no model of the catalogue can take this request") as caught:
        dearest_wins.route(QUERIES[0], Needs(modalities=frozenset({Modality.AUDIO})))
    assert "large-api: no audio input" in str(caught.value)
    with pytest.raises(DataError, match="exclude: unknown model"):
        dearest_wins.route(QUERIES[0], Needs(exclude=frozenset({"gpt-9"})))
    with pytest.raises(DataError, match="min_model"):
        dearest_wins.route(QUERIES[0], Needs(min_model="gpt-9"))
    with pytest.raises(DataError, match="needs for"):
        dearest_wins.route_batch(QUERIES, [Needs()])


@pytest.mark.parametrize("rule", list(Rule))
def test_every_rule_chooses_among_allowed_models_only(rule):
    rng = np.random.default_rng(0)
    scores, costs = rng.random((200, 2)), np.array([1.0, 5.0])
    allowed = rng.random((200, 2)) < 0.7
    allowed[~allowed.any(axis=1), 0] = True
    for knob in (0.0, 0.2):
        picked = choose(scores, costs, rule, knob, allowed)
        assert allowed[np.arange(200), picked].all()
        both = allowed.all(axis=1)  # rows with nothing ruled out choose as without a mask
        assert (picked[both] == choose(scores, costs, rule, knob)[both]).all()


def test_the_catalogue_accepts_capabilities_and_rejects_bad_ones(example_catalog, tmp_path):
    card = example_catalog.models[0].model_dump()
    card.update(
        context_window=8192, modalities=["text", "image"], tools=True, rate_limits={"requests_per_minute": 60}
    )
    catalog = Catalog.model_validate({"models": [card]})
    catalog.save(tmp_path / "catalog.yaml")
    assert Catalog.model_validate_json(catalog.model_dump_json()) == catalog
    assert "- image" in (tmp_path / "catalog.yaml").read_text()
    with pytest.raises(ValueError, match="modalities"):
        Catalog.model_validate({"models": [{**card, "modalities": ["smell"]}]})


def test_token_counts_are_a_real_tokenizer_or_a_conservative_estimate():
    text = "The quick brown fox jumps over the lazy dog. " * 20
    assert estimate_tokens(text) == -(-len(text) // 3)
    if tokenizer_name().startswith("tiktoken"):
        assert count_tokens(text) < estimate_tokens(text)
    else:
        assert count_tokens(text) == estimate_tokens(text)
