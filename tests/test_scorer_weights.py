"""The smoothed scorer's logit-space weights: difficulty_weight (α) and specific_weight (β)."""

import numpy as np
import pytest

from tagrouter.scoring import SmoothedScorer, TagTable, scorer_from_config


def table() -> TagTable:
    t = TagTable()
    # tag 'hard': m1 loses 3 of 4, the context model c loses all 4; tag 'easy': everyone wins
    t = t.added([["hard"]] * 4, ["m1"] * 4, ["loss", "loss", "loss", "win"])
    t = t.added([["hard"]] * 4, ["c"] * 4, ["loss"] * 4)
    t = t.added([["easy"]] * 4, ["m1"] * 4, ["win"] * 4)
    t = t.added([["easy"]] * 4, ["c"] * 4, ["win"] * 4)
    return t


def logit(p):
    return np.log(p / (1 - p))


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_tag_value_by_hand():
    t = table()
    scorer = SmoothedScorer(
        prior_strength=4.0,
        difficulty_strength=1.0,
        difficulty_weight=2.0,
        specific_weight=0.5,
        discrimination=False,
    )
    m1, hard = t.model_index["m1"], t.tag_index["hard"]
    p_m1 = (5 + 1) / (8 + 2)  # m1: 5 of 8 accepted, Laplace
    p_c = (4 + 1) / (8 + 2)
    # Newton step for 'hard': residual Σ (a − n p) = (1 − 4 p_m1) + (0 − 4 p_c); information Σ n p (1 − p) + 1
    d = ((1 - 4 * p_m1) + (0 - 4 * p_c)) / (4 * p_m1 * (1 - p_m1) + 4 * p_c * (1 - p_c) + 1.0)
    prior = sigmoid(logit(p_m1) + d)
    smoothed = (1 + 4 * prior) / (4 + 4)
    expected = sigmoid(logit(p_m1) + 2.0 * d + 0.5 * (logit(smoothed) - logit(prior)))
    assert scorer.tag_values(t)[hard, m1] == pytest.approx(expected)


def test_unit_weights_give_the_smoothed_rate():
    t = table()
    unit = SmoothedScorer(difficulty_weight=1.0, specific_weight=1.0, discrimination=False)
    assert scorer_from_config(SmoothedScorer().config()) == SmoothedScorer()
    m1, hard = t.model_index["m1"], t.tag_index["hard"]
    p_m1 = 0.6
    d = unit.tag_difficulty(t.counts, unit.model_prior(t.model_counts))[hard]
    prior = sigmoid(logit(p_m1) + d)
    assert unit.tag_values(t)[hard, m1] == pytest.approx((1 + 20 * prior) / (4 + 20))


def test_a_larger_difficulty_weight_spreads_hard_and_easy_further_apart():
    t = table()
    m1, hard, easy = t.model_index["m1"], t.tag_index["hard"], t.tag_index["easy"]
    spread = [
        np.diff(SmoothedScorer(difficulty_weight=a).tag_values(t)[[hard, easy], m1])[0] for a in (1.0, 2.0)
    ]
    assert 0 < spread[0] < spread[1]


def test_discrimination_slope_by_hand_and_its_effect():
    t = table()
    scorer = SmoothedScorer(prior_strength=4.0, difficulty_strength=1.0)
    p = scorer.model_prior(t.model_counts)
    d = scorer.tag_difficulty(t.counts, p)
    m1 = t.model_index["m1"]
    # m1's smoothed deviation per tag: logit((a + 4 prior) / (4 + 4)) − logit p_m1, prior = σ(logit p_m1 + d_t)
    accepted = {"hard": 1, "easy": 4}
    num, den = 1.0, 1.0
    for tag, a in accepted.items():
        dt = d[t.tag_index[tag]]
        prior = sigmoid(logit(p[m1]) + dt)
        y = logit((a + 4 * prior) / 8) - logit(p[m1])
        num, den = num + 4 * y * dt, den + 4 * dt**2
    slopes = scorer.discrimination_slopes(t.counts, p, d)
    assert slopes[m1] == pytest.approx(num / den)
    # the context model c follows the difficulty more steeply than m1 (it loses every hard answer)
    assert slopes[t.model_index["c"]] > slopes[m1]
    flat = SmoothedScorer(prior_strength=4.0, difficulty_strength=1.0, discrimination=False)
    assert flat.discrimination_slopes(t.counts, p, d).tolist() == [1.0, 1.0]
