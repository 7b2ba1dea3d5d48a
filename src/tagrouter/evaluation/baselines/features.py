"""Query features shared by the baselines: the query embedding, optionally joined by a multi-hot tag vector.

The "+ tags" variants tag every query and append the L2-normalised multi-hot vector of its tags (the
vocabulary is the set of tags seen on the training queries; unseen tags are dropped) to the embedding, so
both blocks have unit norm and weigh the same in a cosine or dot product.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sklearn.preprocessing import MultiLabelBinarizer, normalize

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
        self._binarizer = MultiLabelBinarizer()
        self._binarizer.fit(self._tagger(list(queries)))
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
