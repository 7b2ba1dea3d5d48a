"""Query features shared by the baselines: the query embedding, optionally joined by a multi-hot tag vector.

The "+ tags" variants tag every query and append the L2-normalised multi-hot vector of its tags (the
vocabulary is the set of tags seen on the training queries; unseen tags are dropped) to the embedding, so
both blocks have unit norm and weigh the same in a cosine or dot product.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sklearn.preprocessing import MultiLabelBinarizer, normalize

#: Tags of a batch of queries, one list per query (e.g. a fold's fitted tagger's ``tag`` method).
TagsFor = Callable[[list[str]], list[list[str]]]


def default_tags_for(train_queries: Sequence[str]) -> TagsFor:
    """Tag with the default embedded tagger fitted on the training queries only (takes a few seconds)."""
    from tagrouter.tagging.embedded import EmbeddedTagger

    return EmbeddedTagger.fit(list(train_queries)).tag


class QueryFeatures:
    """Turns (queries, embeddings) into feature rows: the embedding alone, or embedding ⊕ tag vector.

    ``tags`` False: features are the embeddings. ``tags`` True: tags come from ``tags_for`` when given
    (the harness injects one tagger per fold, fitted on that fold's training queries), else from the
    default tagger fitted in :meth:`fit`.
    """

    def __init__(self, tags: bool = False, tags_for: TagsFor | None = None) -> None:
        self.tags = tags
        self.tags_for = tags_for
        self._tagger: TagsFor | None = None
        self._binarizer: MultiLabelBinarizer | None = None

    def fit_transform(self, queries: list[str], embeddings: np.ndarray) -> np.ndarray:
        """Learn the tag vocabulary from the training queries and return their features."""
        if not self.tags:
            return np.asarray(embeddings, dtype=np.float64)
        self._tagger = self.tags_for or default_tags_for(queries)
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
