"""The live learner: exploration that finds what exploitation misses, honest propensities, constraints and
budget kept, unbiased learning, bounded influence per source, replicas that agree, new models that onboard."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest

from tagrouter.catalog import Catalog
from tagrouter.constraints import Needs
from tagrouter.deciding import Decider, Rule
from tagrouter.live import Judged, LiveLearner, LivePolicy
from tagrouter.records import HistoryRecord
from tagrouter.router import TagRouter
from tagrouter.scoring import SmoothedScorer, TagTable

#: Direct tag-rate estimates (α = β = 1), light prior: the table itself is what is tested.
SCORER = SmoothedScorer(prior_strength=5.0, difficulty_weight=1.0, specific_weight=1.0, discrimination=False)


class TopicTagger:
    """Tags a query with its words that start with ``#`` (no fitting, no vocabulary)."""

    def tag(self, texts: Sequence[str]) -> list[list[str]]:
        return [[w for w in t.split() if w.startswith("#")] for t in texts]


def catalog(*models: tuple[str, float]) -> Catalog:
    return Catalog.model_validate(
        {"models": [{"name": n, "input_usd_per_1m": p, "output_usd_per_1m": p} for n, p in models]}
    )


POOL = catalog(("cheap", 0.1), ("dear", 10.0))


def record(i: int, query: str, model: str, outcome: str) -> HistoryRecord:
    return HistoryRecord(query_id=f"q{i}", query=query, model=model, outcome=outcome, output_tokens=100)


def seed_query(i: int) -> str:
    return f"{'#poetry' if i % 2 else '#history'} item {i}"


def seed_history() -> list[HistoryRecord]:
    """40 queries on #poetry and #history: dear always right, cheap right on half (never seen on #math)."""
    out = []
    for i in range(40):
        query = seed_query(i)
        out.append(record(i, query, "dear", "win"))
        out.append(record(i, query, "cheap", "win" if i % 4 < 2 else "loss"))
    return out


def seed_router(knob: float = 0.0) -> TagRouter:
    router = TagRouter.fit(seed_history(), POOL, tagger=TopicTagger(), scorer=SCORER)
    return router.with_decider(Decider(Rule.WITHIN, knob))


def run_math_stream(learner: LiveLearner, n: int, start: int = 0) -> list[str]:
    """``n`` #math queries (cheap is always right on them, dear too) decided and learned; the choices."""
    chosen = []
    for i in range(start, start + n):
        live = learner.decide(f"#math problem {i}")
        learner.learn([Judged(f"#math problem {i}", live.model, "win", live.propensity)])
        chosen.append(live.model)
    return chosen


def test_exploration_finds_a_cheap_model_that_a_pure_exploiter_never_tries():
    policy = LivePolicy(reselect_growth=None)
    live = LiveLearner(seed_router(knob=0.1), policy, rng=np.random.default_rng(0))
    greedy = LiveLearner(
        seed_router(knob=0.1),
        LivePolicy(budget_share=0.0, reselect_growth=None),
        rng=np.random.default_rng(0),
    )
    explored = run_math_stream(live, 300)
    exploited = run_math_stream(greedy, 300)
    assert exploited.count("cheap") == 0  # cheap's #math rate is never learned: dear is always chosen
    first = explored.index("cheap")
    assert first < 100
    assert explored[-100:].count("cheap") >= 90  # found, then exploited
    assert live.router.route("#math again").model == "cheap"


def test_propensities_are_the_frequencies_of_the_choices():
    learner = LiveLearner(
        seed_router(knob=0.1), LivePolicy(reselect_growth=None), rng=np.random.default_rng(1)
    )
    learner.learn([Judged("#math one", "dear", "win"), Judged("#math two", "cheap", "win", 0.5)])
    trials = 4000
    decisions = [learner.decide("#math three") for _ in range(trials)]
    seen = Counter(d.model for d in decisions)
    assert 0 < seen["cheap"] < trials  # both are chosen sometimes
    for d in decisions:
        assert d.propensity == d.probabilities[d.model]
        assert sum(d.probabilities.values()) == pytest.approx(1.0)
    for model in ("cheap", "dear"):
        mean_probability = np.mean([d.probabilities.get(model, 0.0) for d in decisions])
        assert seen[model] / trials == pytest.approx(mean_probability, abs=0.025)
    assert all(d.explored == (d.model != d.greedy) for d in decisions)


def test_exploration_never_breaks_a_constraint_an_override_or_a_pin():
    pool = catalog(("cheap", 0.1), ("mid", 1.0), ("dear", 10.0))
    history = [*seed_history(), *(record(i, seed_query(i), "mid", "win") for i in range(40))]
    router = TagRouter.fit(history, pool, tagger=TopicTagger(), scorer=SCORER)
    learner = LiveLearner(router.with_decider(Decider(Rule.WITHIN, 0.1)), LivePolicy(budget_share=0.5))
    learner.with_catalog(catalog(("cheap", 0.1), ("mid", 1.0), ("dear", 10.0), ("new", 0.05)))
    rules = [
        (Needs(exclude=frozenset({"new"})), lambda m: m != "new"),
        (Needs(min_model="mid"), lambda m: m in ("mid", "dear")),
        (Needs(max_cost_usd=1e-4), lambda m: m in ("cheap", "new")),
    ]
    explored = 0
    for i in range(300):
        needs, ok = rules[i % 3]
        decision = learner.decide(f"#math case {i}", needs)
        assert ok(decision.model), (needs, decision.model)
        explored += decision.explored
    assert explored > 0  # the new model's wide posterior is explored wherever it is allowed
    pinned = [learner.decide(f"#math pinned {i}", explore=False) for i in range(100)]
    assert all(d.propensity == 1.0 and not d.explored and d.model == d.greedy for d in pinned)


def test_the_budget_holds_over_a_long_stream():
    learner = LiveLearner(
        seed_router(knob=0.0),
        LivePolicy(budget_share=0.02, reselect_growth=None),
        rng=np.random.default_rng(2),
    )
    # a dear model with no history: exploration wants it, the budget bounds it
    learner.with_catalog(catalog(("cheap", 0.1), ("dear", 10.0), ("premium", 40.0)))
    explorations = 0
    for i in range(2000):
        live = learner.decide(f"#poetry long {i}")
        spend = learner.budget()
        assert spend.exploration <= 0.02 * spend.spent + 1e-12
        explorations += live.explored and live.model == "premium"
        if live.model != "premium":
            learner.learn([Judged(f"#poetry long {i}", live.model, "win", live.propensity)])
    assert explorations > 0
    assert learner.budget().exploration > 0.5 * 0.02 * learner.budget().spent  # the budget is used
    off = LiveLearner(seed_router(), LivePolicy(budget_share=0.0))
    assert not any(off.decide(f"#poetry {i}").explored for i in range(50))


def test_inverse_propensity_learning_is_unbiased_where_plain_counting_is_not():
    """Model A is right on every #easy and wrong on every #hard query, both tagged #topic; the policy sent
    A 90% of the #easy and 10% of the #hard ones. A's true rate on #topic is 1/2."""
    rng = np.random.default_rng(3)

    def stream(propensity_known: bool) -> TagTable:
        policy = LivePolicy(max_weight=10.0, reselect_growth=None, per_source_weight=None)
        learner = LiveLearner(seed_router(), policy)
        judged = []
        for i in range(4000):
            easy = i % 2 == 0
            chance = 0.9 if easy else 0.1
            if rng.random() < chance:  # A was chosen with this propensity
                outcome = "win" if easy else "loss"
                query = f"#topic {'#easy' if easy else '#hard'} {i}"
                judged.append(Judged(query, "cheap", outcome, chance if propensity_known else 1.0))
        learner.learn(judged)
        return learner.model.table

    def rate(table: TagTable) -> float:
        counts = table.rows(np.array([table.tag_index["#topic"]]))[0, table.model_index["cheap"]]
        return float((counts[0] + counts[1]) / counts.sum())

    assert rate(stream(propensity_known=False)) == pytest.approx(0.9, abs=0.02)
    assert rate(stream(propensity_known=True)) == pytest.approx(0.5, abs=0.03)


def test_by_default_every_outcome_counts_once_whatever_its_propensity():
    learner = LiveLearner(seed_router(), LivePolicy(reselect_growth=None, per_source_weight=None))
    judged = [Judged(f"#math q{i}", "cheap", "win", p) for i, p in enumerate([1.0, 0.5, 0.1, 0.03])]
    assert learner.learn(judged) == [1.0, 1.0, 1.0, 1.0]
    counts = learner.model.table.rows(np.array([learner.model.table.tag_index["#math"]]))[0]
    assert counts[learner.model.table.model_index["cheap"]].sum() == pytest.approx(4.0)


def test_weights_count_like_repeated_records():
    tags = [["a", "b"], ["b"], ["a"]]
    weighted = TagTable.count(tags, ["m", "n", "m"], ["win", "loss", "tie"], [2.0, 1.0, 3.0])
    repeated = TagTable.count(
        [tags[0]] * 2 + [tags[1]] + [tags[2]] * 3,
        ["m", "m", "n", "m", "m", "m"],
        ["win"] * 2 + ["loss"] + ["tie"] * 3,
    )
    assert weighted.equals(repeated)
    assert TagTable.count(tags, ["m", "n", "m"], ["win", "loss", "tie"], [1.0, 1.0, 1.0]).equals(
        TagTable.count(tags, ["m", "n", "m"], ["win", "loss", "tie"])
    )


def test_replicas_that_apply_the_stored_weights_learn_the_same_table():
    policy = LivePolicy(max_weight=10.0, reselect_growth=None)  # weighted: replicas must agree on weights
    receiving, follower = LiveLearner(seed_router(), policy), LiveLearner(seed_router(), policy)
    judged = [
        Judged(f"#math q{i}", "cheap" if i % 3 else "dear", "win" if i % 2 else "loss", 0.2 + 0.1 * (i % 7))
        for i in range(60)
    ]
    weights = receiving.learn(judged)
    assert len(set(weights)) > 1
    order = np.random.default_rng(4).permutation(len(judged))
    for start in range(0, len(order), 7):  # another order, other batches
        part = order[start : start + 7]
        follower.learn_weighted([judged[i] for i in part], [weights[i] for i in part])
    a, b = receiving.model.table, follower.model.table
    assert a.tags and set(a.tags) == set(b.tags)
    rows = np.array([b.tag_index[t] for t in a.tags])
    np.testing.assert_allclose(a.counts, b.counts[rows], rtol=1e-12)
    np.testing.assert_allclose(a.model_counts, b.model_counts, rtol=1e-12)


def test_one_source_cannot_re_steer_the_pool_beyond_its_bound():
    queries = [f"{'#poetry' if i % 2 else '#history'} new {i}" for i in range(200)]

    def after_flood(policy: LivePolicy) -> tuple[int, float]:
        learner = LiveLearner(seed_router(knob=0.1), policy, clock=lambda: 1000.0)
        before = [d.model for d in learner.router.route_batch(queries)]
        assert before.count("dear") == 200
        weights = learner.learn(
            [Judged(q, "dear", "loss", source="mallory") for q in queries[:100] * 10]  # 1,000 losses
        )
        after = [d.model for d in learner.router.route_batch(queries)]
        return sum(a != b for a, b in zip(before, after, strict=True)), sum(weights)

    changed, weight = after_flood(LivePolicy(reselect_growth=None, per_source_weight=20.0))
    assert weight <= 20.0
    assert changed == 0
    unbounded, _ = after_flood(LivePolicy(reselect_growth=None, per_source_weight=None))
    assert unbounded == 200  # what the bound prevents


def test_the_source_bound_is_per_window():
    now = [0.0]
    learner = LiveLearner(
        seed_router(),
        LivePolicy(reselect_growth=None, per_source_weight=5.0, window_s=60.0),
        clock=lambda: now[0],
    )
    assert sum(learner.learn([Judged(f"#a {i}", "dear", "win", source="k") for i in range(10)])) == 5.0
    assert learner.stats.refused == 5
    assert sum(learner.learn([Judged("#b", "dear", "win", source="other")])) == 1.0
    now[0] = 61.0
    assert sum(learner.learn([Judged(f"#c {i}", "dear", "win", source="k") for i in range(3)])) == 3.0


def test_a_new_model_onboards_and_earns_its_share():
    learner = LiveLearner(
        seed_router(knob=0.1), LivePolicy(reselect_growth=None), rng=np.random.default_rng(5)
    )
    learner.with_catalog(catalog(("cheap", 0.1), ("dear", 10.0), ("newcomer", 0.05)))
    chosen = []
    for i in range(400):  # the newcomer is right on everything
        query = f"{'#poetry' if i % 2 else '#history'} next {i}"
        live = learner.decide(query)
        outcome = "win" if live.model != "cheap" or i % 4 < 2 else "loss"
        learner.learn([Judged(query, live.model, outcome, live.propensity)])
        chosen.append(live.model)
    assert chosen[:100].count("newcomer") > 0
    assert chosen[-100:].count("newcomer") >= 80


def test_settings_are_re_selected_as_the_evidence_doubles():
    learner = LiveLearner(
        seed_router(), LivePolicy(reselect_growth=2.0), history=seed_history(), rng=np.random.default_rng(6)
    )
    run_math_stream(learner, 39)
    assert learner.stats.reselections == 0
    run_math_stream(learner, 1, start=39)  # 40 seed + 40 stream queries: doubled
    assert learner.stats.reselections == 1
    assert learner.stats.last_selection is not None and "chosen" in learner.stats.last_selection
    assert learner.model.scorer.config() == {**learner.stats.last_selection["chosen"]}


def test_a_re_selection_keeps_the_embedding_residual_it_chose(monkeypatch):
    """The residual that the inner cross-validation chose is applied (a model it did not tune, here a new
    one, gets no correction); without one the tags alone route."""
    import tagrouter.tuning
    from tagrouter.residual import EmbeddingResidual

    tune = tagrouter.tuning.tune_model
    chosen = EmbeddingResidual(np.arange(6.0).reshape(3, 2), np.array([0.5, -0.5]))

    def tune_with_residual(model, sample):
        scorer, point, report = tune(model, sample)
        assert model.models == ["cheap", "dear"]  # the newcomer was left out of the tuning
        return scorer, point, replace(report, residual=chosen)

    monkeypatch.setattr(tagrouter.tuning, "tune_model", tune_with_residual)
    learner = LiveLearner(
        seed_router(), LivePolicy(reselect_growth=2.0), history=seed_history(), rng=np.random.default_rng(6)
    )
    learner.with_catalog(catalog(("cheap", 0.1), ("newcomer", 0.05), ("dear", 10.0)))
    run_math_stream(learner, 40)
    assert learner.stats.reselections == 1
    residual = learner.model.residual
    assert residual is not None and learner.model.models == ["cheap", "newcomer", "dear"]
    assert np.array_equal(residual.weights, [[0.0, 0.0, 1.0], [2.0, 0.0, 3.0], [4.0, 0.0, 5.0]])
    assert np.array_equal(residual.intercept, [0.5, 0.0, -0.5])


def test_a_re_selection_keeps_the_conversation_mode_it_chose(monkeypatch):
    """A history with conversations makes the inner cross-validation choose how earlier turns count; the
    re-selected model counts them that way (it kept the fit's mode before)."""
    import tagrouter.tuning
    from tagrouter.conversation import CANDIDATES, Conversation

    tune = tagrouter.tuning.tune_model
    chosen = Conversation.weighted(0.75)

    def tune_with_conversation(model, sample):
        scorer, point, report = tune(model, sample)
        inner_auc = [0.5] * len(CANDIDATES)
        return scorer, point, replace(report, conversation=chosen, conversation_auc=inner_auc)

    monkeypatch.setattr(tagrouter.tuning, "tune_model", tune_with_conversation)
    learner = LiveLearner(
        seed_router(), LivePolicy(reselect_growth=2.0), history=seed_history(), rng=np.random.default_rng(6)
    )
    assert learner.model.conversation != chosen
    run_math_stream(learner, 40)
    assert learner.stats.reselections == 1
    assert learner.model.conversation == chosen


def test_background_re_selection_swaps_in_new_settings_while_decisions_go_on():
    learner = LiveLearner(
        seed_router(),
        LivePolicy(reselect_growth=2.0),
        history=seed_history(),
        rng=np.random.default_rng(7),
        background=True,
    )
    run_math_stream(learner, 40)  # the 40th learned query starts the selection in a thread
    run_math_stream(learner, 5, start=40)  # decisions and learning meanwhile
    learner.wait_selection()
    assert learner.stats.reselections == 1
    assert learner.model.scorer.config() == learner.stats.last_selection["chosen"]
    assert learner.stats.learned == 45
    assert "#math" in learner.model.table.tag_index  # what was learned meanwhile is in the swapped-in model


def test_a_gap_rule_becomes_within_when_a_third_model_joins():
    learner = LiveLearner(
        seed_router().with_decider(Decider(Rule.GAP, -0.2)), LivePolicy(reselect_growth=None)
    )
    learner.with_catalog(catalog(("cheap", 0.1), ("dear", 10.0), ("new", 1.0)))
    assert learner.decider == Decider(Rule.WITHIN, 0.0)
    assert learner.decide("#poetry x").model in {"cheap", "dear", "new"}


def test_the_litellm_plugin_explores_and_learns_through_a_learner():
    import asyncio
    from types import SimpleNamespace

    from tagrouter.integrations.litellm import TagRouterPlugin

    learner = LiveLearner(
        seed_router(knob=0.1), LivePolicy(reselect_growth=None), rng=np.random.default_rng(8)
    )
    plugin = TagRouterPlugin(learner)
    signals = []
    for i in range(300):
        query = f"#math plugin {i}"
        context = SimpleNamespace(
            metadata={},
            candidate_models=["openai/cheap", "openai/dear"],
            structured_messages=[{"role": "user", "content": query}],
            signals={},
        )
        asyncio.run(plugin.run(context))
        signal = context.signals["tagrouter"]
        assert context.candidate_models == [f"openai/{signal['model']}"]
        plugin.learn([Judged(query, signal["model"], "win", signal["propensity"])])
        signals.append(signal)
    assert any(s["explored"] for s in signals)
    assert [s["model"] for s in signals[-50:]].count("cheap") >= 45  # learned from its own exploration
    plain = TagRouterPlugin(seed_router(knob=0.1))  # a plain router: never explores
    assert plain.learner.policy.budget_share == 0.0
