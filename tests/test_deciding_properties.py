"""The knob's monotonicity as a property (hypothesis): for every decision rule, raising the knob never sends
a query to a dearer model (README, *Choices where the paper is silent*: Decider)."""

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="the property tests need hypothesis (the dev extra)")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402

from tagrouter.deciding import Decider, Rule  # noqa: E402


@st.composite
def _routing_cases(draw, rule: Rule):
    """Scores (n × M), distinct prices, an allowed mask with at least one model a row, and two knobs."""
    m = 2 if rule is Rule.GAP else draw(st.integers(2, 5))
    n = draw(st.integers(1, 12))
    unit = st.floats(0.0, 1.0, allow_nan=False, width=32)
    scores = draw(arrays(np.float64, (n, m), elements=unit))
    prices = draw(st.permutations(sorted(draw(st.sets(st.integers(1, 1000), min_size=m, max_size=m)))))
    costs = np.array(prices, dtype=float) / 1000
    allowed = draw(arrays(np.bool_, (n, m)))
    allowed[np.arange(n), draw(arrays(np.int64, n, elements=st.integers(0, m - 1)))] = True
    reach = 20.0 if rule is Rule.UTILITY else 1.5  # where the choices change: score units (per dollar)
    low = 0.0 if rule is Rule.WITHIN else -reach
    knobs = sorted(draw(st.lists(st.floats(low, reach, allow_nan=False), min_size=2, max_size=2)))
    return scores, costs, allowed, knobs


@pytest.mark.parametrize("rule", list(Rule))
def test_raising_the_knob_never_sends_a_query_to_a_dearer_model(rule):
    """For every rule (a new ``Rule`` member is included automatically): at a higher knob, no query goes
    to a dearer model than at a lower one, with or without an allowed mask, and the choice is always an
    allowed model. Bugs caught (each checked by hand): ``within`` taking the first eligible model in
    catalogue order instead of the cheapest, ``utility`` adding the cost term (``score + knob·cost``)."""

    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(_routing_cases(rule))
    def check(case):
        scores, costs, allowed, (low, high) = case
        for mask in (None, allowed):
            at_low = Decider(rule, low).choose(scores, costs, mask)
            at_high = Decider(rule, high).choose(scores, costs, mask)
            assert np.all(costs[at_high] <= costs[at_low])
            if mask is not None:
                rows = np.arange(len(scores))
                assert mask[rows, at_low].all() and mask[rows, at_high].all()

    check()
