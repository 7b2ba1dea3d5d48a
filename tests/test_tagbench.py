"""The tag benchmark's figures on a small labelled set whose right answers are counted by hand."""

from __future__ import annotations

import numpy as np

from tagrouter.evaluation import tagbench
from tagrouter.evaluation.tagbench import LabelledSet, is_grounded, measure, word_forms


def labelled() -> LabelledSet:
    texts = [
        "Write a Christmas card for my grandmother",
        "Solve 3x + 5 = 11 for x",
        "Which stories did the children like?",
        "hi",
    ]
    labels = ["writing", "math", "reading", "chat"]
    naming = {"writing": ("creative writing",), "math": ("math", "mathematics"), "reading": ("literature",)}
    return LabelledSet("tiny", texts, labels, naming)


def test_figures_count_named_labels_grounded_tags_and_non_words():
    tags = [
        [
            "creative writing",
            "relationship",
            "christma",
            "card",
            "grandmother",
        ],  # named; christma: a non-word
        ["coding", "mathematics", "solve"],  # named by the domain
        ["poetry", "music", "story", "child"],  # not named; both fine tags grounded through lemmas
        ["poetry", "environment", "hop", "routine"],  # neither named nor grounded
    ]
    figures = measure(labelled(), tags, spot=2, seed=0)
    assert figures["queries"] == 4 and figures["labels"] == 4
    assert figures["coarse_named"] == 0.5
    # fine tags: christma, card, grandmother | solve | story, child | hop, routine = 8
    assert figures["fine_per_query"] == 8 / 4
    assert np.isclose(
        figures["fine_grounded"], 6 / 8
    )  # christma counts as grounded ("christmas" = christma + s)
    assert np.isclose(figures["fine_nonwords"], 3 / 8)  # christma, hop, routine occur in no query
    assert figures["nonword_tags"][0] in {"christma", "hop", "routine"}
    assert len(figures["spot_check"]) == 2 and all(row["tags"] for row in figures["spot_check"])


def test_grounding_accepts_inflections_and_dictionary_lemmas_only():
    words = word_forms({"children", "emails", "written"})
    assert is_grounded("child", words) and is_grounded("email", words) and is_grounded("write", words)
    assert not is_grounded("child email list", words)


def test_run_fits_a_tagger_per_set_on_its_own_queries():
    seen = []

    def fit_tagger(texts):
        seen.append(list(texts))
        return lambda batch: [["literature", t.split()[0].lower()] for t in batch]

    results = tagbench.run([labelled()], fit_tagger)
    assert seen == [labelled().texts]
    assert results["tiny"]["coarse_named"] == 0.25  # only "reading" is named by literature
    assert results["tiny"]["fine_grounded"] == 1.0
