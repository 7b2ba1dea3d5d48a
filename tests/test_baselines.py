"""Baseline routers on synthetic two-topic data where the right answer is known: model "a" is accepted on
every topic-1 query and rejected on every topic-2 query, model "b" the opposite; a learned router must
rank "a" first on held-out topic-1 queries and "b" first on topic-2 ones."""

from __future__ import annotations

import numpy as np
import pytest

from tagrouter.evaluation.base import FoldData
from tagrouter.evaluation.baselines import (
    BASELINES,
    FORCRouter,
    KNNRouter,
    RandomRouter,
    SingleModelRouter,
)
from tagrouter.evaluation.baselines.features import QueryFeatures
from tagrouter.evaluation.baselines.sw_ranking import SHARPNESS_GRID, battle_outcomes, bradley_terry
from tagrouter.evaluation.baselines.tuning import select

DIM = 16
WORDS = {1: "cooking", 2: "algebra"}


def make_fold(
    rng: np.random.Generator, per_topic: int, informative: bool = True
) -> tuple[FoldData, np.ndarray]:
    """``per_topic`` queries of each topic; embeddings cluster by topic (or are pure noise when not
    ``informative``); returns the data and each query's topic."""
    topic = np.repeat([1, 2], per_topic)
    centres = rng.normal(size=(3, DIM)) * (3.0 if informative else 0.0)
    embeddings = centres[topic] + rng.normal(size=(len(topic), DIM))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    accepted = np.stack([topic == 1, topic == 2], axis=1)
    costs = np.tile([1.0, 2.0], (len(topic), 1))
    context = rng.random((len(topic), 3)) < 0.5
    queries = [f"question {i} about {WORDS[t]}" for i, t in enumerate(topic)]
    return FoldData(queries, embeddings, accepted, context, costs, ["a", "b"]), topic


def tag_words(texts: list[str]) -> list[list[str]]:
    return [[w for w in WORDS.values() if w in text] + ["question"] for text in texts]


def split(informative: bool = True, seed: int = 0) -> tuple[FoldData, FoldData, np.ndarray]:
    rng = np.random.default_rng(seed)
    data, topic = make_fold(rng, 80, informative)
    order = rng.permutation(len(topic))
    train, test = order[:120], order[120:]
    return data.subset(train), data.subset(test), topic[test]


# knn-easiness sees only how easy a query is for all models together, which these two topics do not differ in
LEARNED = [name for name in BASELINES if name not in ("random", "knn-easiness")]


@pytest.mark.parametrize("name", LEARNED)
def test_learned_baselines_rank_the_right_model_first(name):
    train, test, topic = split()
    router = BASELINES[name](seed=0, tagger_for=lambda queries: tag_words)
    router.fit(train)
    scores = router.predict(test.queries, test.embeddings)
    assert scores.shape == (len(topic), 2)
    assert np.all((scores >= 0) & (scores <= 1))
    best = np.where(scores.argmax(axis=1) == 0, 1, 2)
    assert np.array_equal(best, topic), name
    assert router.name == name


@pytest.mark.parametrize("name", ["knn+tags", "mf+tags", "forc+tags"])
def test_tag_variants_use_the_tags(name):
    """With noise embeddings the topic is visible only in the tags."""
    train, test, topic = split(informative=False)
    router = BASELINES[name](seed=0, tagger_for=lambda queries: tag_words)
    router.fit(train)
    best = np.where(router.predict(test.queries, test.embeddings).argmax(axis=1) == 0, 1, 2)
    assert np.mean(best == topic) >= 0.9


def test_tagger_is_asked_for_with_the_training_queries_only():
    train, test, _ = split()
    asked: list[list[str]] = []

    def tagger_for(queries: list[str]):
        asked.append(list(queries))
        return tag_words

    router = BASELINES["knn+tags"](tagger_for=tagger_for)
    router.fit(train)
    router.predict(test.queries, test.embeddings)
    assert asked == [train.queries]


def test_without_an_injected_tagger_the_default_one_is_fitted_on_the_training_queries():
    train, test, topic = split()
    router = KNNRouter("knn+tags", tags=True)
    router.fit(train)
    vocabulary = set(router.features._binarizer.classes_)
    assert "cooking" in vocabulary or "question about cooking" in vocabulary
    best = np.where(router.predict(test.queries, test.embeddings).argmax(axis=1) == 0, 1, 2)
    assert np.array_equal(best, topic)


def test_routellm_mf_runs_routellms_own_code(monkeypatch):
    monkeypatch.setenv(
        "OPENAI_API_KEY", "not-used"
    )  # routellm builds an OpenAI client at import; none is called
    pytest.importorskip(
        "routellm", reason="RouteLLM's own code needs the routellm extra (scripts/test.sh installs it)"
    )
    from tagrouter.evaluation.baselines import RouteLLMMFRouter

    train, test, topic = split()
    router = RouteLLMMFRouter(num_epochs=40, lr=1e-2)
    router.fit(train)
    best = np.where(router.predict(test.queries, test.embeddings).argmax(axis=1) == 0, 1, 2)
    assert np.array_equal(best, topic)


def test_without_tags_noise_embeddings_give_no_routing_signal():
    train, test, topic = split(informative=False)
    router = KNNRouter()
    router.fit(train)
    best = np.where(router.predict(test.queries, test.embeddings).argmax(axis=1) == 0, 1, 2)
    assert np.mean(best == topic) < 0.8


def test_plain_knn_is_the_neighbour_accept_rate():
    train, _, _ = split()
    router = KNNRouter(ks=(20,))
    router.fit(train)
    probe = train.embeddings[:1]
    similarity = train.embeddings @ probe[0]
    nearest = np.argsort(-similarity)[:20]
    expected = train.accepted[nearest].mean(axis=0)
    assert np.allclose(router.predict(train.queries[:1], probe)[0], expected)


def test_knn_prior_shrinks_toward_the_overall_rate():
    train, test, _ = split()
    plain, shrunk = KNNRouter(ks=(10,)), KNNRouter(ks=(10,), priors=(1e6,))
    plain.fit(train)
    shrunk.fit(train)
    overall = (train.accepted.sum(axis=0) + 0.5) / (len(train.queries) + 1)
    assert np.allclose(shrunk.predict(test.queries, test.embeddings), overall, atol=1e-4)
    assert not np.allclose(plain.predict(test.queries, test.embeddings), overall, atol=0.1)


def test_knn_easiness_learns_difficulty_from_all_history_models():
    """Topic 1 is easy (every model accepted), topic 2 hard (only the strong model "b")."""
    train, test, topic = split()
    easy = np.array([q.endswith(WORDS[1]) for q in train.queries])
    accepted = np.stack([easy, np.ones_like(easy)], axis=1)
    context = np.tile(easy[:, None], (1, 3))
    train = FoldData(train.queries, train.embeddings, accepted, context, train.costs, train.models)
    router = BASELINES["knn-easiness"]()
    router.fit(train)
    scores = router.predict(test.queries, test.embeddings)
    assert np.all(scores[topic == 1, 0] > 0.7) and np.all(scores[topic == 2, 0] < 0.3)
    assert np.allclose(scores[:, 1], scores[0, 1]) and scores[0, 1] > 0.9


def test_forc_uses_context_models_only_when_asked():
    """The context outcomes enter FORC's shared component: other context data, other predictions."""
    train, test, topic = split()
    noisy = np.random.default_rng(5).random((len(train.queries), 6)) < 0.3
    noisy_train = FoldData(train.queries, train.embeddings, train.accepted, noisy, train.costs, train.models)
    predictions = {}
    for context in (True, False):
        for data in (train, noisy_train):
            router = FORCRouter(context=context)
            router.fit(data)
            predictions[context, data is train] = router.predict(test.queries, test.embeddings)
    assert not np.allclose(predictions[True, True], predictions[True, False])
    assert np.array_equal(predictions[False, True], predictions[False, False])
    for scores in predictions.values():
        assert np.array_equal(np.where(scores.argmax(axis=1) == 0, 1, 2), topic)


def test_random_router_is_seeded_and_uniform():
    train, test, _ = split()
    first, second, other = RandomRouter(seed=3), RandomRouter(seed=3), RandomRouter(seed=4)
    for router in (first, second, other):
        router.fit(train)
    a = first.predict(test.queries, test.embeddings)
    assert np.array_equal(a, second.predict(test.queries, test.embeddings))
    assert not np.array_equal(a, other.predict(test.queries, test.embeddings))
    assert a.shape == (len(test.queries), 2) and 0.3 < a.mean() < 0.7


def test_single_model_router_scores_its_model_only():
    train, test, _ = split()
    router = SingleModelRouter("b")
    router.fit(train)
    scores = router.predict(test.queries, test.embeddings)
    assert np.all(scores[:, 1] == 1) and np.all(scores[:, 0] == 0)
    with pytest.raises(ValueError, match="not in the pool"):
        SingleModelRouter("zzz").fit(train)


def test_bradley_terry_matches_known_win_rate():
    """Two players, 30 wins of 40 games: the MLE win probability is 0.75."""
    wins = np.array([[[0.0, 30.0], [10.0, 0.0]]])
    games = wins + wins.transpose(0, 2, 1)
    theta = bradley_terry(wins, games)
    assert theta[0, 1] == 0.0
    assert 1 / (1 + np.exp(-theta[0, 0])) == pytest.approx(0.75)


def test_bradley_terry_solves_the_likelihood_equations():
    """At the MLE every player's expected wins equal its observed wins."""
    accepted = np.random.default_rng(2).random((50, 4)) < [0.5, 0.6, 0.8, 0.9]
    wins = battle_outcomes(accepted).sum(axis=0)[None] + 0.5 * (1 - np.eye(5))
    games = wins + wins.transpose(0, 2, 1)
    theta = bradley_terry(wins, games)[0]
    expected = (games[0] / (1 + np.exp(theta[None, :] - theta[:, None]))).sum(axis=1)
    assert np.allclose(expected, wins[0].sum(axis=1))
    assert np.all(np.diff(theta[:4]) > 0)  # ordered like the accept rates


def test_battle_outcomes_between_models_and_reference():
    outcomes = battle_outcomes(np.array([[True, False]]))[0]
    # players: a, b, reference; a beats b and the reference, b loses to both
    assert outcomes.tolist() == [[0.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]


def test_query_features_append_normalised_multi_hot_tags():
    features = QueryFeatures(tags=True, tagger_for=lambda queries: tag_words)
    embeddings = np.eye(2)
    train = features.fit_transform(["x cooking", "y algebra"], embeddings)
    assert train.shape == (2, 2 + 3)  # 2 embedding dims + tags {algebra, cooking, question}
    assert np.allclose(np.linalg.norm(train[:, 2:], axis=1), 1.0)
    unseen = features.transform(["z"], np.eye(2)[:1])  # only "question" is known
    assert np.allclose(unseen[0, 2:], [0.0, 0.0, 1.0])


def test_select_picks_the_candidate_with_the_lowest_brier_score():
    accepted = np.tile([[1.0, 0.0]], (30, 1))

    def fit_predict(candidates, train, held):
        return [np.full((len(held), 2), [c, 1 - c]) for c in candidates]

    assert select([0.2, 0.9, 0.5], fit_predict, accepted) == 0.9


def test_select_with_costs_picks_the_best_routing_curve_not_the_best_brier_score():
    """ "rank" orders the models right on every query but is badly calibrated; "rates" is each model's
    accept rate, best by Brier score, and cannot route at all."""
    rng = np.random.default_rng(0)
    accepted = rng.random((90, 2)) < 0.8
    costs = np.tile([1.0, 4.0], (90, 1))
    ranked = np.where(accepted, 0.52, 0.48)
    rates = np.tile(accepted.mean(axis=0), (90, 1))
    predictions = {"rank": ranked, "rates": rates}

    def fit_predict(candidates, train, held):
        return [predictions[c][held] for c in candidates]

    assert select(["rates", "rank"], fit_predict, accepted) == "rates"
    assert select(["rates", "rank"], fit_predict, accepted, costs=costs) == "rank"


def test_faithful_variants_keep_the_sources_settings_and_tuned_ones_choose():
    train, _, _ = split()
    faithful, tuned = BASELINES["sw-ranking"](), BASELINES["sw-ranking-cv"]()
    for router in (faithful, tuned):
        router.fit(train)
    assert faithful.sharpness == 1.0 and faithful.grid == (1.0,)
    assert tuned.grid == SHARPNESS_GRID and tuned.sharpness in SHARPNESS_GRID
    fixed = BASELINES["knn-50"]()
    fixed.fit(train)
    assert (fixed.k, fixed.prior) == (50, 0.0)
