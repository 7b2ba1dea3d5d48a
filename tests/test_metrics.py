"""The routing curve's hull and the §4 metrics (DESIGN.md) on small hand-made curves worked out here."""

import numpy as np
import pytest

from tagrouter.curves import Reference, hull, realised
from tagrouter.evaluation.metrics import curve_metrics, mixture_auc, oracle_choice

# Two single models: cheap costs $1 with AR 0.6, strong costs $3 with AR 0.9 -> x = (C - 1) / 2.
PAIR = Reference.from_singles([1.0, 3.0], [0.6, 0.9])


def test_reference_picks_cheapest_and_best_with_ties():
    ref = Reference.from_singles([2.0, 1.0, 5.0, 4.0], [0.7, 0.5, 0.9, 0.9])
    # cheapest: $1 (AR 0.5); best AR 0.9 at $4 and $5 -> the cheaper, $4
    assert (ref.cost_lo, ref.ar_cheapest, ref.cost_best, ref.ar_best) == (1.0, 0.5, 4.0, 0.9)
    assert ref.normalise(2.5) == pytest.approx(0.5)
    assert ref.dollars(0.5) == pytest.approx(2.5)


def test_reference_rejects_nothing_to_route():
    with pytest.raises(ValueError, match="nothing to route"):
        Reference.from_singles([1.0, 2.0], [0.9, 0.8])


def test_hull_drops_points_under_the_chord_and_is_non_decreasing():
    # points: (0.5, 0.7) lies under the chord from (0, 0.6) to (1, 0.9) (0.75 there): not a vertex.
    # (0.25, 0.8) is above it; (1.5, 0.85) is past the peak: the hull stays flat at 0.9 after x = 1.
    h = hull([0.25, 0.5, 1.0, 1.5], [0.8, 0.7, 0.9, 0.85], ar_cheapest=0.6)
    assert h.x.tolist() == [0.0, 0.25, 1.0]
    assert h.y.tolist() == [0.6, 0.8, 0.9]
    assert float(h(2.0)) == pytest.approx(0.9)
    assert float(h(0.125)) == pytest.approx(0.7)


def test_hull_of_a_point_that_dominates_everything_is_flat_after_it():
    h = hull([0.1, 0.5, 1.0], [0.95, 0.8, 0.9], ar_cheapest=0.6)
    assert h.x.tolist() == [0.0, 0.1]
    assert float(h(0.05)) == pytest.approx(0.775)
    assert float(h(1.0)) == pytest.approx(0.95)


def test_random_mixture_of_a_pair_is_the_straight_line():
    # AUC = (0.6 + 0.9) / 2 = 0.75, APGR = 0.5, nothing above the best model, no uplift, no saving
    m = curve_metrics([1.0, 3.0], [0.6, 0.9], PAIR, pair=(0.6, 0.9))
    assert m.auc == pytest.approx(0.75)
    assert m.apgr == pytest.approx(0.5)
    assert m.pauc == pytest.approx(0.0)
    assert m.uplift == pytest.approx(0.0)
    assert m.cost_saving == pytest.approx(0.0)  # reaches AR_best only at C_best: 1 - 3/3
    assert mixture_auc([1.0, 3.0], [0.6, 0.9], PAIR) == pytest.approx(0.75)


def test_router_with_a_knee_worked_example():
    # One router point at C = $2 (x = 0.5) with AR 0.9, plus the strong model's point (x = 1, 0.9).
    # H: 0.6 -> 0.9 linearly on [0, 0.5], then flat 0.9.
    # AUC = 0.5 * (0.6 + 0.9) / 2 + 0.5 * 0.9 = 0.375 + 0.45 = 0.825; APGR = (0.825 - 0.6) / 0.3 = 0.75
    # PAUC = 0 (never above AR_best = 0.9); uplift = 0.9 / 0.9 - 1 = 0
    # C* = C at x = 0.5 = $2 -> cost saving = 1 - 2/3 = 1/3
    m = curve_metrics([2.0, 3.0], [0.9, 0.9], PAIR, pair=(0.6, 0.9))
    assert m.auc == pytest.approx(0.825)
    assert m.apgr == pytest.approx(0.75)
    assert m.pauc == pytest.approx(0.0)
    assert m.uplift == pytest.approx(0.0)
    assert m.cost_saving == pytest.approx(1 / 3)


def test_super_model_area_uplift_and_crossing():
    # Router points (x=0.5, AR 0.95) and (x=1, AR 1.0). H: (0, 0.6) -> (0.5, 0.95) -> (1, 1.0):
    # slopes 0.7 then 0.1: concave, all vertices kept.
    # AUC = 0.5 * (0.6 + 0.95) / 2 + 0.5 * (0.95 + 1.0) / 2 = 0.3875 + 0.4875 = 0.875
    # H reaches 0.9 at x* = (0.9 - 0.6) / 0.7 = 3/7; PAUC = ∫ max(0, H - 0.9):
    #   on [3/7, 0.5]: triangle 0.5 * (0.5 - 3/7) * 0.05 = 0.05 / 28
    #   on [0.5, 1]:   0.5 * (0.05 + 0.1) / 2 = 0.0375
    # uplift = 1.0 / 0.9 - 1 = 1/9; C* = 1 + 2 * 3/7 = 13/7 dollars -> saving = 1 - 13/21 = 8/21
    m = curve_metrics([2.0, 3.0], [0.95, 1.0], PAIR, pair=(0.6, 0.9))
    assert m.auc == pytest.approx(0.875)
    assert m.pauc == pytest.approx(0.05 / 28 + 0.0375)
    assert m.uplift == pytest.approx(1 / 9)
    assert m.cost_saving == pytest.approx(8 / 21)
    assert m.apgr == pytest.approx((0.875 - 0.6) / 0.3)


def test_not_reaching_the_best_model_gives_no_cost_saving_and_negative_uplift():
    # Router tops out at 0.8: H = 0.6 -> 0.8 on [0, 0.5], flat after. AUC = 0.5 * 0.7 + 0.5 * 0.8 = 0.75
    m = curve_metrics([2.0], [0.8], PAIR)
    assert m.cost_saving is None
    assert m.apgr is None
    assert m.auc == pytest.approx(0.75)
    assert m.uplift == pytest.approx(0.8 / 0.9 - 1)


def test_points_beyond_the_best_cost_only_count_up_to_x_1():
    # A point at x = 2 (C = $5) with AR 1.0: H rises from (0, 0.6) to (2, 1.0), slope 0.2;
    # on [0, 1]: AUC = (0.6 + 0.8) / 2 = 0.7; it reaches 0.9 only at x = 1.5 > 1: not reached
    m = curve_metrics([5.0], [1.0], PAIR)
    assert m.auc == pytest.approx(0.7)
    assert m.cost_saving is None
    assert m.uplift == pytest.approx(0.8 / 0.9 - 1)


def test_oracle_takes_the_cheapest_accepted_model():
    accepted = np.array([[True, True], [False, True], [False, False]])
    costs = np.array([[1.0, 3.0], [2.0, 1.5], [0.5, 4.0]])
    choice = oracle_choice(accepted, costs)
    # row 0: both accepted, cheaper is 0; row 1: only 1; row 2: none, the cheapest (0)
    assert choice.tolist() == [0, 1, 0]
    cost, ar = realised(choice, accepted, costs)
    assert cost == pytest.approx(1.0 + 1.5 + 0.5)
    assert ar == pytest.approx(2 / 3)
