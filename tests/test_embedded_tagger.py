"""The embedded student tagger's coarse groups."""

from tagrouter.embedding import default_embedder
from tagrouter.tagging.embedded import EmbeddedTagger


def test_seed_tags_whose_normal_form_differs_stay_coarse():
    # "pets" and "how-to instructions" are normalised to "pet" and "how-to instruction" in the vocabulary;
    # they must still count as a domain and a task type, not as fine tags.
    queries = ["how do I train my dog to sit", "how do I bathe my cat", "how can I feed my puppy"]
    teacher_tags = [["how-to instructions", "pets", "dog"], ["how-to instructions", "pets", "cat"]] + [
        ["how-to instructions", "pets", "dog"]
    ]
    tagger = EmbeddedTagger.from_teacher_tags(queries, teacher_tags, embedder=default_embedder(), min_count=2)
    tags = tagger.tag(["how should I walk my dog"])[0]
    assert tags[:2] == ["how-to instruction", "pet"]
    assert "pet" not in tags[2:] and "how-to instruction" not in tags[2:]
    assert "dog" in tags[2:]
