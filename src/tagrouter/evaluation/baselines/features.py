"""Query features shared by the baselines: the query embedding, optionally joined by a multi-hot tag vector.

The "+ tags" variants tag every query and append the L2-normalised multi-hot vector of its tags (the
vocabulary is the :data:`MAX_TAGS` tags seen on most training queries, ties by name; other tags are dropped)
to the embedding, so both blocks have unit norm and weigh the same in a cosine or dot product. The cap keeps
the feature count, and with it the cost of the ridge and matrix-factorisation fits, bounded on histories of
thousands of queries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.preprocessing import MultiLabelBinarizer, normalize

#: Tag columns of the "+ tags" features at most: the most frequent training tags.
MAX_TAGS = 256
#: Tags of a batch of queries, one list per query (e.g. a fitted tagger's ``tag`` method).
TagFunction = Callable[[list[str]], list[list[str]]]
#: Given a fold's training queries, the tag function for that fold (a tagger fitted on those queries only).
TaggerFor = Callable[[list[str]], TagFunction]


def default_tagger_for(train_queries: Sequence[str]) -> TagFunction:
    """The default embedded tagger fitted on the training queries only (takes a few seconds)."""
    from tagrouter.tagging.embedded import EmbeddedTagger

    return EmbeddedTagger.fit(list(train_queries)).tag


class QueryFeatures:
    """Turns (queries, embeddings) into feature rows: the embedding alone, or embedding ⊕ tag vector.

    ``tags`` False: features are the embeddings. ``tags`` True: :meth:`fit_transform` asks
    ``tagger_for(training queries)`` for the fold's tag function (the harness shares one fitted tagger per
    training set between routers); without one it fits the default tagger on the training queries.
    """

    def __init__(self, tags: bool = False, tagger_for: TaggerFor | None = None) -> None:
        self.tags = tags
        self.tagger_for = tagger_for or default_tagger_for
        self._tagger: TagFunction | None = None
        self._binarizer: MultiLabelBinarizer | None = None

    def fit_transform(self, queries: list[str], embeddings: np.ndarray) -> np.ndarray:
        """Learn the tag vocabulary from the training queries and return their features."""
        if not self.tags:
            return np.asarray(embeddings, dtype=np.float64)
        self._tagger = self.tagger_for(list(queries))
        counts = Counter(t for row in self._tagger(list(queries)) for t in set(row))
        vocabulary = sorted(counts, key=lambda t: (-counts[t], t))[:MAX_TAGS]
        self._binarizer = MultiLabelBinarizer(classes=sorted(vocabulary))
        self._binarizer.fit([])
        return self._join(queries, embeddings)

    def transform(self, queries: list[str], embeddings: np.ndarray) -> np.ndarray:
        """Features of new queries (tags outside the training vocabulary are ignored)."""
        if not self.tags:
            return np.asarray(embeddings, dtype=np.float64)
        return self._join(queries, embeddings)

    def _join(self, queries: list[str], embeddings: np.ndarray) -> np.ndarray:
        assert self._tagger is not None and self._binarizer is not None, "fit_transform first"
        known = set(self._binarizer.classes_)
        tags = [[t for t in row if t in known] for row in self._tagger(list(queries))]
        multi_hot = normalize(self._binarizer.transform(tags).astype(np.float64))
        return np.hstack([np.asarray(embeddings, dtype=np.float64), multi_hot])
