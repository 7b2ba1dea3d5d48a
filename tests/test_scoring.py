import numpy as np
import pytest

from tagrouter.errors import DataError
from tagrouter.scoring import PaperScorer, SmoothedScorer, TagTable, scorer_from_config


def small_table() -> TagTable:
    table = TagTable()
    # query A has tags (code, python), query B (code), query C (poem)
    tags = {"A": ["code", "python"], "B": ["code"], "C": ["poem"]}
    rows = [
        ("A", "m1", "win"),
        ("A", "m2", "loss"),
        ("B", "m1", "tie"),
        ("B", "m2", "win"),
        ("C", "m1", "loss"),
        ("C", "m2", "win"),
    ]
    table = table.added([tags[q] for q, _, _ in rows], [m for _, m, _ in rows], [o for _, _, o in rows])
    return table


def test_counts_by_hand():
    table = small_table()
    code, m1, m2 = table.tag_index["code"], table.model_index["m1"], table.model_index["m2"]
    assert table.counts[code, m1].tolist() == [1, 1, 0]  # win (A), tie (B)
    assert table.counts[code, m2].tolist() == [1, 0, 1]  # loss (A), win (B)
    assert table.model_counts[m1].tolist() == [1, 1, 1]  # one per record, not per tag


def test_paper_scorer_formula_by_hand():
    table = small_table()
    scorer = PaperScorer(rewards=(1.0, 0.15, -1.0))
    scores = scorer.score(table, [["code", "python"], ["poem"], ["unknown"]])
    m1, m2 = table.model_index["m1"], table.model_index["m2"]
    # code: m1 = 1 + 0.15 = 1.15, m2 = 1 - 1 = 0; python: m1 = 1, m2 = -1
    assert scores[0, m1] == pytest.approx(2.15) and scores[0, m2] == pytest.approx(-1.0)
    assert scores[1, m1] == pytest.approx(-1.0) and scores[1, m2] == pytest.approx(1.0)
    assert scores[2].tolist() == [0.0, 0.0]


def test_paper_scorer_idf_weights_rare_tags_up():
    table = small_table()
    values = PaperScorer(tag_weighting="idf").tag_values(table)
    plain = PaperScorer().tag_values(table)
    weight = values[table.tag_index["python"]] / plain[table.tag_index["python"]]
    # python: 2 of the 8 (record, tag) pairs -> log1p(8 / 2)
    assert weight == pytest.approx([np.log1p(8 / 2)] * 2)


def test_smoothed_scorer_formula_by_hand():
    table = small_table()
    # α = β = 1: the tag value is the smoothed rate itself
    scorer = SmoothedScorer(prior_strength=2.0, difficulty=False, difficulty_weight=1.0, specific_weight=1.0)
    m1 = table.model_index["m1"]
    prior_m1 = (2 + 1) / (3 + 2)  # 2 of 3 records accepted, Laplace
    assert scorer.model_prior(table.model_counts)[m1] == pytest.approx(prior_m1)
    code = scorer.tag_values(table)[table.tag_index["code"], m1]
    assert code == pytest.approx((2 + 2 * prior_m1) / (2 + 2))
    score = scorer.score(table, [["code", "poem"], []])
    poem = (0 + 2 * prior_m1) / (1 + 2)
    assert score[0, m1] == pytest.approx((code + poem) / 2)  # mean over tags
    assert score[1, m1] == pytest.approx(prior_m1)  # no known tag: the prior


def test_difficulty_prior_moves_with_all_models():
    table = TagTable()
    # 'hard' queries: every model loses; 'easy': every model wins; m3 is a context model
    for tag, outcome in (("hard", "loss"), ("easy", "win")):
        for model in ("m1", "m2", "m3"):
            table = table.added([[tag]] * 5, [model] * 5, [outcome] * 5)
    table = table.added([["new"]], ["m1"], ["win"])
    scorer = SmoothedScorer(prior_strength=20.0, difficulty=True, difficulty_strength=1.0)
    shift = scorer.tag_difficulty(table.counts, scorer.model_prior(table.model_counts))
    assert shift[table.tag_index["hard"]] < -1 < 1 < shift[table.tag_index["easy"]]
    values = scorer.tag_values(table)
    plain = SmoothedScorer(prior_strength=20.0, difficulty=False).tag_values(table)
    m1 = table.model_index["m1"]
    assert values[table.tag_index["hard"], m1] < plain[table.tag_index["hard"], m1]


def test_update_equals_refit_for_tables():
    first, second = small_table(), TagTable()
    second = second.added([["poem"], ["code", "new"]], ["m3", "m1"], ["win", "loss"])
    incremental = small_table()
    incremental = incremental.added([["poem"], ["code", "new"]], ["m3", "m1"], ["win", "loss"])
    refit = TagTable()
    refit = refit.added([["poem"], ["code", "new"]], ["m3", "m1"], ["win", "loss"])
    refit = refit.added(
        [["code", "python"], ["code"], ["poem"]] * 2,
        ["m1", "m1", "m1", "m2", "m2", "m2"],
        ["win", "tie", "loss", "loss", "win", "win"],
    )
    assert incremental.equals(refit) and not first.equals(refit)


def test_scorer_config_round_trip():
    for scorer in (
        PaperScorer(rewards=(1, 0.2, -0.5), tag_weighting="idf"),
        SmoothedScorer(prior_strength=7),
    ):
        assert scorer_from_config(scorer.config()) == scorer
    with pytest.raises(DataError, match="unknown scorer kind"):
        scorer_from_config({"kind": "magic"})


def test_tables_merge_in_any_order_to_the_same_sum():
    a = TagTable.count([["code"], ["poem", "x"]], ["m1", "m2"], ["win", "loss"])
    b = TagTable.count([["poem"], ["new"]], ["m3", "m1"], ["tie", "win"])
    c = small_table()
    assert a.merged(b).merged(c).equals(c.merged(a).merged(b))
    assert a.merged(b).equals(a.added([["poem"], ["new"]], ["m3", "m1"], ["tie", "win"]))


def test_row_blocks_copy_only_the_blocks_they_change():
    from tagrouter.arrays import BLOCK_ROWS, RowBlocks

    blocks = RowBlocks.from_array(np.arange(3 * BLOCK_ROWS * 2, dtype=float).reshape(-1, 2))
    changed = blocks.with_rows(np.array([BLOCK_ROWS + 1]), np.array([[-1.0, -2.0]]))
    assert changed.blocks[0] is blocks.blocks[0] and changed.blocks[2] is blocks.blocks[2]
    assert changed.gather(np.array([BLOCK_ROWS + 1, 0])).tolist() == [[-1.0, -2.0], [0.0, 1.0]]
    assert blocks.gather(np.array([BLOCK_ROWS + 1])).tolist() == [
        [2.0 * BLOCK_ROWS + 2, 2.0 * BLOCK_ROWS + 3]
    ]
    grown = blocks.with_rows(np.array([3 * BLOCK_ROWS + 5]), np.array([[7.0, 8.0]]))
    assert grown.n_rows == 3 * BLOCK_ROWS + 6 and grown.to_array()[-1].tolist() == [7.0, 8.0]
