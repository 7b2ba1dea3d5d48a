import numpy as np
import pytest

from tagrouter.embedding import default_embedder
from tagrouter.tagging.normalize import normalize_tag
from tagrouter.tagging.teacher import candidate_phrases
from tagrouter.tagging.vocabulary import Vocabulary, build_vocabulary


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Short Stories! ", "short story"),
        ('"Email_Writing"', "email writing"),
        ("the grammar of", "grammar"),
        ("C++", "c++"),
        ("node.js", "node.js"),
        ("analysis", "analysis"),
        ("1984", None),
        ("a very long tag with far too many words", None),
        ("?!", None),
        ("I'd like", "like"),
        ("the user's request", "user request"),
        ("don't know", "know"),
        ("Christmas card ideas", "christmas card idea"),
        ("christmas", "christmas"),
        ("breaking news", "breaking news"),
        ("chocolate cookies", "chocolate cookie"),
        ("animal species", "animal species"),
        ("children", "child"),
        ("GPUs", "gpus"),  # unknown to the lexicon: kept as written, never cut
    ],
)
def test_normalize_tag(raw, expected):
    assert normalize_tag(raw) == expected


class TableEmbedder:
    """A fixed embedding per tag text, so the merge is decided by the test."""

    name = "table"

    def __init__(self, vectors):
        self.vectors = {k: np.asarray(v, dtype=np.float32) / np.linalg.norm(v) for k, v in vectors.items()}

    def embed(self, texts):
        return np.stack([self.vectors[t] for t in texts]) if texts else np.zeros((0, 3), np.float32)


def test_build_vocabulary_drops_rare_and_merges_near_duplicates():
    embedder = TableEmbedder(
        {
            "poem": [1, 0, 0],
            "poetry": [1, 0.05, 0],
            "python": [0, 1, 0],
            "rare": [0, 0, 1],
        }
    )
    tag_lists = [["Poems", "python"]] * 4 + [["poetry"]] * 2 + [["rare"]] + [["python"]]
    vocab = build_vocabulary(tag_lists, embedder, min_count=2, merge_distance=0.05)
    # 'rare' (1 query) dropped; 'poetry' merged into the more frequent 'poem'
    assert vocab.tags == ["poem", "python"]
    assert vocab.counts == [6, 5]
    assert vocab.aliases["poetry"] == "poem"
    # alignment: exact, alias, nearest above the cut-off, and nothing below it
    aligned = vocab.align([["Poetry", "python", "poem"], ["rare"]], embedder, cutoff=0.9)
    assert aligned == [["poem", "python"], []]


def test_kept_tags_survive_min_count():
    embedder = TableEmbedder({"coding": [1, 0, 0], "poem": [0, 1, 0]})
    vocab = build_vocabulary([["poem"]] * 3 + [["coding"]], embedder, min_count=2, keep=["coding"])
    assert set(vocab.tags) == {"poem", "coding"}


def test_vocabulary_save_load(tmp_path):
    vocab = Vocabulary(
        tags=["a", "b"], counts=[3, 2], aliases={"aa": "a"}, embeddings=np.eye(2, dtype=np.float32)
    )
    vocab.save(tmp_path)
    again = Vocabulary.load(tmp_path)
    assert again.tags == vocab.tags and again.aliases == {"aa": "a", "a": "a", "b": "b"}
    assert np.array_equal(again.embeddings, vocab.embeddings)


def test_real_embedder_merges_plural_variants_and_candidates():
    """With the real embedder, near-duplicates that normalisation leaves apart ("math problem" and "maths
    problem", "cooking recipe" and "recipe for cooking") merge into their most frequent member, while an
    unrelated tag stays. Bug caught: the embedding merge (DBSCAN) skipped or run at a distance of 0, so
    only the normalised duplicates ("recipes", "Recipe!") merge."""
    from tagrouter.tagging.normalize import normalize_tag

    variants = [("math problem", "maths problem"), ("cooking recipe", "recipe for cooking")]
    assert all(normalize_tag(a) != normalize_tag(b) for a, b in variants)  # only embeddings can merge them
    vocab = build_vocabulary(
        [["recipe"], ["recipes"], ["Recipe!"], ["tax return"], ["math problem"], ["math problem"]]
        + [["maths problem"], ["cooking recipe"], ["cooking recipe"], ["recipe for cooking"]],
        default_embedder(),
        min_count=1,
        merge_distance=0.1,
    )
    assert "recipe" in vocab.tags and "recipes" not in vocab.tags
    assert {"math problem", "cooking recipe", "tax return"} <= set(vocab.tags)
    assert not {"maths problem", "recipe for cooking"} & set(vocab.tags)
    assert vocab.aliases["maths problem"] == "math problem"
    assert vocab.aliases["recipe for cooking"] == "cooking recipe"
    assert "python function" in candidate_phrases("Write a Python function, please")
    assert not any("x" in p.split() for p in candidate_phrases("Solve x + x = 4 for x in C"))
    assert "c" not in candidate_phrases("Solve x + x = 4 for x in C")  # too short alone
    assert all(not p.startswith("a ") for p in candidate_phrases("Write a Python function"))
