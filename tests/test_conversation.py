"""Conversations chosen by the data: the fit picks how earlier turns count (tuning), keeps the choice in
the saved router, and the gateway and the LiteLLM plugin use it."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from tagrouter.catalog import Catalog
from tagrouter.cli import app
from tagrouter.conversation import CANDIDATES, FALLBACK, Conversation, from_setting, joined
from tagrouter.errors import DataError
from tagrouter.records import HistoryRecord
from tagrouter.router import TagRouter
from tagrouter.server.config import GatewayConfig, load_gateway_config
from tagrouter.server.profiles import ProfileSet
from tagrouter.tuning import ConversationTags, select_scorer

MODELS = ["cheap", "dear"]


def _conversations(where: str, n: int = 600, seed: int = 0):
    """Two models (cheap, dear), 20 topics; the cheap model's accept rate grows with the topic from 0.1 to
    0.95 (graded, so that any noise in the scores reorders the queries), the dear one's is 0.9. Half the queries are first turns tagged with their
    topic; the others are second turns. ``where="earlier"``: a second turn's own text is a generic follow-up
    (a noise tag) and its topic is in the earlier turn; ``where="last"``: its topic is its own tag and the
    earlier turn is an unrelated random topic. Returns tags, codes, costs and the conversation tags."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, 20, n)
    second = np.arange(n) % 2 == 1
    tags, earlier = [], []
    for t, later in zip(topic, second, strict=True):
        if not later:
            tags.append([f"topic {t}"])
        elif where == "earlier":
            tags.append([f"follow-up {rng.integers(0, 50)}"])
            earlier.append([f"topic {t}"])
        else:
            tags.append([f"topic {t}"])
            earlier.append([f"topic {rng.integers(0, 20)}"])
    p_cheap = 0.1 + 0.85 * topic / 19
    accepted = np.column_stack([rng.random(n) < p_cheap, rng.random(n) < 0.9])
    codes = np.where(accepted, 0, 2)
    costs = np.column_stack([np.full(n, 0.001), np.full(n, 0.01)])
    rows = np.flatnonzero(second)
    together = [[*before, *tags[i]] for before, i in zip(earlier, rows, strict=True)]
    return tags, codes, costs, ConversationTags(rows, earlier, together)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_fit_counts_earlier_turns_where_only_they_carry_the_signal(seed):
    tags, codes, costs, conversations = _conversations("earlier", seed=seed)
    _, _, report = select_scorer(tags, codes, MODELS, costs, [0, 1], seed=seed, conversations=conversations)
    assert report.conversation is not None and report.conversation.mode != "last"
    auc = dict(zip(CANDIDATES, report.conversation_auc, strict=True))
    assert auc[report.conversation] > auc[Conversation("last")] + 0.02
    assert report.conversation_queries == len(conversations.rows)
    saved = report.to_dict()["conversation"]
    assert Conversation.from_dict(saved["chosen"]) == report.conversation
    assert [c["auc"] for c in saved["candidates"]] == pytest.approx(report.conversation_auc, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_fit_routes_on_the_last_message_where_the_earlier_turn_is_noise(seed):
    tags, codes, costs, conversations = _conversations("last", seed=seed)
    _, _, report = select_scorer(tags, codes, MODELS, costs, [0, 1], seed=seed, conversations=conversations)
    assert report.conversation == Conversation("last")
    assert max(report.conversation_auc[1:]) < report.conversation_auc[0]


def test_without_conversations_nothing_changes():
    tags, codes, costs, conversations = _conversations("earlier")
    plain = select_scorer(tags, codes, MODELS, costs, [0, 1])
    # a sample with too few conversation queries to choose from is the same as none
    few = ConversationTags(conversations.rows[:3], conversations.earlier[:3], conversations.joined[:3])
    with_few = select_scorer(tags, codes, MODELS, costs, [0, 1], conversations=few)
    for report in (plain[2], with_few[2]):
        assert report.conversation is None and report.to_dict()["conversation"] is None
    assert plain[0] == with_few[0] and plain[1] == with_few[1]
    assert plain[2].auc == with_few[2].auc and plain[2].menu == with_few[2].menu


def test_the_chosen_mode_sets_the_default_point():
    """The default point and the menu are computed from the chosen mode's scores: where the earlier turn
    carries the signal, the point saves more than where the fit must route the second turns blind."""
    tags, codes, costs, conversations = _conversations("earlier")
    _, blind, _ = select_scorer(tags, codes, MODELS, costs, [0, 1])
    _, seeing, _ = select_scorer(tags, codes, MODELS, costs, [0, 1], conversations=conversations)
    assert seeing.mean_cost < blind.mean_cost


TOPICS = ["poetry", "chemistry", "football", "cooking", "taxes", "astronomy"]
TOPICS += ["gardening", "jazz", "surgery", "sailing", "chess", "knitting"]
FOLLOW_UPS = ["make it shorter", "say more", "go on please", "another one", "explain again", "now simpler"]


def _records(n: int = 240, seed: int = 0) -> list[HistoryRecord]:
    """A chat history: first turns "Tell me about TOPIC." and second turns that are generic follow-ups
    whose topic is only in their earlier turn; the cheap model's accept rate grows with the topic."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        topic = int(rng.integers(0, len(TOPICS)))
        p = 0.1 + 0.85 * topic / (len(TOPICS) - 1)
        outcomes = ("win" if rng.random() < p else "loss", "win" if rng.random() < 0.9 else "loss")
        opening = f"Tell me about {TOPICS[topic]}."
        query, earlier = (opening, None) if i % 2 == 0 else (f"{rng.choice(FOLLOW_UPS)}.", opening)
        for model, outcome in zip(MODELS, outcomes, strict=True):
            records.append(
                HistoryRecord(query_id=f"q{i}", query=query, model=model, outcome=outcome, earlier=earlier)
            )
    return records


CATALOG = Catalog.model_validate(
    {
        "models": [
            {"name": "cheap", "input_usd_per_1m": 0.1, "output_usd_per_1m": 0.1},
            {"name": "dear", "input_usd_per_1m": 10.0, "output_usd_per_1m": 30.0},
        ]
    }
)


@pytest.fixture(scope="module")
def conversation_router() -> TagRouter:
    return TagRouter.fit(_records(), CATALOG)


def test_a_fit_on_conversations_keeps_its_choice_through_save_and_load(conversation_router, tmp_path):
    router = conversation_router
    assert router.model.conversation is not None and router.model.conversation.mode != "last"
    assert router.model.tuning["conversation"]["chosen"] == router.model.conversation.to_dict()
    router.save(tmp_path / "r")
    loaded = TagRouter.load(tmp_path / "r")
    assert loaded.model.conversation == router.model.conversation
    last, earlier = ["say more."], ["Tell me about jazz."]
    assert loaded.score_batch(last, earlier)[1] == pytest.approx(router.score_batch(last, earlier)[1])
    # an update and a re-scoring keep the choice
    assert router.update(_records(n=4, seed=9)).model.conversation == router.model.conversation
    assert router.model.refreshed().conversation == router.model.conversation


def test_a_fit_without_conversations_makes_no_choice(conversation_router):
    records = [r.model_copy(update={"earlier": None}) for r in _records(n=60)]
    router = TagRouter.fit(records, CATALOG, tagger=conversation_router.tagger)
    assert router.model.conversation is None and router.model.tuning["conversation"] is None
    assert router.model.conversation_rule == FALLBACK


def test_inspect_shows_the_choice(conversation_router, tmp_path):
    conversation_router.save(tmp_path / "r")
    result = CliRunner().invoke(app, ["inspect", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # the console wraps lines
    described = conversation_router.model.conversation.describe()
    assert f"earlier turns: {described} (chosen by the fit)" in text
    assert f"earlier turns: {described}, chosen on the 120 conversation queries by inner routing AUC" in text


def test_the_gateway_and_the_plugin_use_the_router_choice(conversation_router):
    router = conversation_router
    last, earlier = ["say more."], ["Tell me about jazz."]
    chosen = router.score_batch(last, earlier, router.model.conversation)[1]
    alone = router.score_batch(last)[1]
    assert not np.allclose(chosen, alone)
    default = ProfileSet(router, GatewayConfig())
    decision = default.route("tagrouter", last, None, earlier)[0]
    assert list(decision.scores.values()) == pytest.approx(chosen[0].tolist())
    explicit = ProfileSet(router, GatewayConfig.model_validate({"conversation_weight": 0}))
    decision = explicit.route("tagrouter", last, None, earlier)[0]
    assert list(decision.scores.values()) == pytest.approx(alone[0].tolist())
    from tagrouter.integrations.litellm import TagRouterPlugin

    assert TagRouterPlugin(router).conversation is None  # None: the router's own
    assert TagRouterPlugin(router, conversation_weight="concatenated").conversation == Conversation(
        "concatenated"
    )


def test_conversation_settings(tmp_path):
    assert from_setting("router") is None
    assert from_setting(0) == Conversation("last") and from_setting(0.4) == Conversation("weighted", 0.4)
    assert from_setting("concatenated") == Conversation("concatenated")
    with pytest.raises(DataError, match="expected 'router', 'last', 'concatenated' or a weight"):
        from_setting("summary")
    assert GatewayConfig().conversation_weight == "router"
    path = tmp_path / "gateway.yaml"
    path.write_text("conversation_weight: 1.5\n")
    with pytest.raises(DataError, match=r"conversation_weight.*must be in \[0, 1\], got 1.5"):
        load_gateway_config(path)
    path.write_text("conversation_weight: true\n")
    with pytest.raises(
        DataError, match=r"conversation_weight.*expected 'router', 'last', 'concatenated' or a weight"
    ):
        load_gateway_config(path)
    path.write_text("conversation_weight: concatenated\n")
    assert load_gateway_config(path).conversation_weight == "concatenated"
    assert joined("a", "b") == "a\n\nb"


@pytest.mark.parametrize("seed", [0, 1])
def test_the_embedding_residual_is_judged_against_the_chosen_mode(seed):
    """Noise embeddings on a history whose second turns need their earlier turn: the residual is compared
    with the tags' scores under the chosen mode (better than the last message's), so the mode's gain is
    not taken for the embedding's and the residual is left out."""
    tags, codes, costs, conversations = _conversations("earlier", seed=seed)
    embeddings = np.random.default_rng(seed).normal(size=(len(tags), 8))
    _, _, report = select_scorer(
        tags, codes, MODELS, costs, [0, 1], seed=seed, embeddings=embeddings, conversations=conversations
    )
    assert report.conversation.mode != "last"
    assert report.residual_auc["tags"] > report.auc[report.chosen]
    assert report.residual is None
