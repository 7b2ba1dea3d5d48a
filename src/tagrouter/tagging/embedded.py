"""The embedded default tagger: a fast student distilled from a teacher's tags, offline and CPU-only.

Fitting: the teacher tags the history queries; the tags are normalised into a vocabulary (rare tags
dropped, near-duplicates merged); each vocabulary tag gets a *prototype*, the normalised mean embedding of
the history queries that carry it. Tagging a new query: embed it (WordLlama, ~0.1 ms) and take the tags
whose prototypes are most similar: the best task type and domain (coarse) and the ``fine`` best
keyphrase tags (fine). One matrix product for a whole batch.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from tagrouter.embedding import Embedder, default_embedder
from tagrouter.errors import ArtifactError
from tagrouter.fileio import atomic_write_bytes
from tagrouter.tagging.base import Tagger
from tagrouter.tagging.normalize import normalize_tag
from tagrouter.tagging.taxonomy import DOMAINS, TASK_TYPES
from tagrouter.tagging.vocabulary import Vocabulary, _npy_bytes, tag_counts, vocabulary_from_counts

Progress = Callable[[str, int, int], None]
#: Queries embedded at once while distilling prototypes (bounds the token matrix: ~64k tokens × 256).
EMBED_CHUNK = 2048
#: Fixed-point units per 1 of the prototype sums (embedding entries are at most 1 in size, so 2**31
#: queries per tag fit an int64 sum).
PROTOTYPE_SCALE = 2**32


@dataclass
class EmbeddedTagger:
    """Nearest-prototype multi-label tagger over a :class:`Vocabulary` (see the module docstring)."""

    vocabulary: Vocabulary
    prototypes: np.ndarray
    fine: int = 8
    embedder: Embedder | None = None
    kind = "embedded"

    def __post_init__(self) -> None:
        self.embedder = self.embedder or default_embedder()
        if self.prototypes.shape[0] != len(self.vocabulary):
            raise ValueError("one prototype per vocabulary tag is needed")
        tags = self.vocabulary.tags
        # vocabulary tags are normalised ("pets" -> "pet"): compare with the normalised seed names
        task_types, domains = _normalised(TASK_TYPES), _normalised(DOMAINS)
        self._groups = [
            np.array([i for i, t in enumerate(tags) if t in task_types], dtype=np.intp),
            np.array([i for i, t in enumerate(tags) if t in domains], dtype=np.intp),
        ]
        self._fine = np.array(
            [i for i, t in enumerate(tags) if t not in task_types and t not in domains], dtype=np.intp
        )
        self._tags = np.array(tags, dtype=object)

    @classmethod
    def fit(
        cls,
        queries: Sequence[str],
        *,
        teacher: Tagger | None = None,
        embedder: Embedder | None = None,
        min_count: int = 2,
        merge_distance: float = 0.1,
        fine: int = 8,
        progress: Progress | None = None,
    ) -> EmbeddedTagger:
        """Distil a student from ``teacher``'s tags of ``queries`` (default teacher: the offline
        :class:`~tagrouter.tagging.teacher.KeyphraseTeacher`)."""
        from tagrouter.tagging.teacher import KeyphraseTeacher

        embedder = embedder or default_embedder()
        teacher = teacher or KeyphraseTeacher(embedder=embedder)
        queries = list(queries)
        teacher_tags: list[list[str]] = []
        for start in range(0, len(queries), 256):
            teacher_tags += teacher.tag(queries[start : start + 256])
            if progress:
                progress("teacher tagging", min(start + 256, len(queries)), len(queries))
        return cls.from_teacher_tags(
            queries,
            teacher_tags,
            embedder=embedder,
            min_count=min_count,
            merge_distance=merge_distance,
            fine=fine,
        )

    @classmethod
    def from_teacher_tags(
        cls,
        queries: Sequence[str],
        teacher_tags: Sequence[Sequence[str]],
        *,
        embedder: Embedder | None = None,
        min_count: int = 2,
        merge_distance: float = 0.1,
        fine: int = 8,
    ) -> EmbeddedTagger:
        """Build the vocabulary from teacher tags and distil prototypes (the seed taxonomy is always kept).

        The stages, each usable on parts of a history (``tagrouter.engines`` runs them on Ray):
        :func:`tag_counts` → :func:`vocabulary_from_counts` → :func:`prototype_sums` → :meth:`from_sums`.
        """
        embedder = embedder or default_embedder()
        vocabulary = student_vocabulary(
            tag_counts(teacher_tags), embedder, min_count=min_count, merge_distance=merge_distance
        )
        sums = prototype_sums(vocabulary, queries, teacher_tags, embedder)
        return cls.from_sums(vocabulary, sums, fine=fine, embedder=embedder)

    @classmethod
    def from_sums(
        cls, vocabulary: Vocabulary, sums: np.ndarray, *, fine: int = 8, embedder: Embedder | None = None
    ) -> EmbeddedTagger:
        """The student whose prototypes are the normalised ``sums`` (fixed point, see
        :func:`prototype_sums`); a kept seed tag that no query carries falls back on its text embedding."""
        prototypes = (sums / PROTOTYPE_SCALE).astype(np.float32)
        unused = ~prototypes.any(axis=1)
        if unused.any():
            prototypes[unused] = vocabulary.embeddings[unused]
        prototypes /= np.linalg.norm(prototypes, axis=1, keepdims=True)
        return cls(vocabulary=vocabulary, prototypes=prototypes, fine=fine, embedder=embedder)

    def tag(self, texts: Sequence[str]) -> list[list[str]]:
        """Each text's best task type and domain, then its ``fine`` best fine tags in vocabulary order
        (most frequent first). The choice is a function of the exact similarities (ties to the earlier
        vocabulary tag), so a query gets the same tags whatever else is in its batch and however the
        matrix product is computed (see :func:`top_columns`)."""
        if len(texts) == 0:
            return []
        vectors = self.embedder.embed(list(texts))
        similarity = vectors @ self.prototypes.T
        groups = [*(g for g in self._groups if len(g)), *([self._fine] if len(self._fine) else [])]
        picks = [
            top_columns(similarity, vectors, self.prototypes, group, self.fine if group is self._fine else 1)
            for group in groups
        ]
        return self._tags[np.concatenate(picks, axis=1)].tolist()

    def save(self, folder: Path) -> dict[str, Any]:
        self.vocabulary.save(folder)
        atomic_write_bytes(folder / "prototypes.npy", _npy_bytes(self.prototypes))
        return {"fine": self.fine, "embedder": getattr(self.embedder, "name", "unknown")}

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any]) -> EmbeddedTagger:
        """Load a saved tagger; one built with another embedder than this installation's is refused,
        since its prototypes would be compared with vectors of another space."""
        embedder = default_embedder()
        saved = config.get("embedder")
        if saved != embedder.name:
            raise ArtifactError(
                f"{folder}: this tagger was built with the embedder {saved!r}, but this installation "
                f"embeds with {embedder.name!r}; install the versions listed under 'provenance' in the "
                "router's manifest.json, or refit the router with this installation"
            )
        try:
            prototypes = np.load(folder / "prototypes.npy")
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{folder}: damaged tagger prototypes ({exc})") from None
        try:
            return cls(
                vocabulary=Vocabulary.load(folder),
                prototypes=prototypes,
                fine=int(config["fine"]),
                embedder=embedder,
            )
        except (KeyError, ValueError) as exc:
            raise ArtifactError(f"{folder}: damaged tagger configuration ({exc})") from None


def student_vocabulary(
    counts: Counter[str], embedder: Embedder, *, min_count: int = 2, merge_distance: float = 0.1
) -> Vocabulary:
    """The student's vocabulary from teacher tag counts (:func:`tag_counts`); the seed taxonomy is kept."""
    return vocabulary_from_counts(
        counts, embedder, min_count=min_count, merge_distance=merge_distance, keep=[*TASK_TYPES, *DOMAINS]
    )


def prototype_sums(
    vocabulary: Vocabulary,
    queries: Sequence[str],
    teacher_tags: Sequence[Sequence[str]],
    embedder: Embedder,
) -> np.ndarray:
    """Per vocabulary tag, the sum of the embeddings of the queries the teacher gave it (exact and alias
    matches only), in fixed point (int64, units of 1 / :data:`PROTOTYPE_SCALE`), embedded
    :data:`EMBED_CHUNK` queries at a time. Integer sums are exact: sums of parts of a history add up to
    the sums of the whole, bit for bit, in any order and whatever the parts."""
    sums: np.ndarray | None = None
    for start in range(0, max(len(queries), 1), EMBED_CHUNK):
        chunk = slice(start, start + EMBED_CHUNK)
        aligned = vocabulary.align(teacher_tags[chunk], embedder, cutoff=1.01)
        rows = np.fromiter((vocabulary.index[t] for tags in aligned for t in tags), dtype=np.intp)
        columns = np.repeat(np.arange(len(aligned)), [len(tags) for tags in aligned])
        carries = csr_matrix(
            (np.ones(len(rows), dtype=np.int64), (rows, columns)), shape=(len(vocabulary), len(aligned))
        )
        fixed = np.rint(embedder.embed(list(queries[chunk])).astype(np.float64) * PROTOTYPE_SCALE)
        part = carries @ fixed.astype(np.int64)
        sums = part if sums is None else sums + part
    return sums


def top_columns(
    similarity: np.ndarray, vectors: np.ndarray, prototypes: np.ndarray, columns: np.ndarray, k: int
) -> np.ndarray:
    """Per row, the ``k`` of ``columns`` with the highest exact similarity ``vectors @ prototypes.T``
    (ties: the earlier column), in the order of ``columns``.

    ``similarity`` is that product in float32, whose value depends on how it was summed (BLAS splits a
    batch differently by its size, so one query's similarities can differ in the last bits from batch to
    batch). Every computed value is within :func:`similarity_error` of the exact one: columns clearly
    above or below the k-th computed value are decided by it; the few within twice the bound of it are
    decided by their exact similarity (float32 products are exact in float64; ``math.fsum`` rounds their
    sum once), so the choice is the same on every machine and in every batch."""
    block = similarity[:, columns]
    n, k = len(block), min(k, len(columns))
    kth = -np.partition(-block, k - 1, axis=1)[:, k - 1 : k]
    window = 2 * similarity_error(vectors.shape[1])
    sure, near = block > kth + window, np.abs(block - kth) <= window
    chosen = sure | near
    for row in np.flatnonzero(chosen.sum(axis=1) > k):
        candidates = np.flatnonzero(near[row])
        exact = np.zeros(len(candidates))  # a text with no known token has similarity 0 everywhere
        if vectors[row].any():
            products = prototypes[columns[candidates]].astype(np.float64) * vectors[row].astype(np.float64)
            exact = np.array([math.fsum(p) for p in products])
        keep = candidates[np.lexsort((candidates, -exact))[: k - int(sure[row].sum())]]
        chosen[row, candidates] = False
        chosen[row, keep] = True
    return columns[np.nonzero(chosen)[1].reshape(n, k)]


def similarity_error(dim: int) -> float:
    """A bound, twice the worst case, on the float32 rounding error of the dot product of two unit vectors
    of ``dim`` entries summed in any order (γ_dim = dim · 2⁻²⁴ of the sum of |products|, at most 1)."""
    return 2 * dim * 2.0**-24


def _normalised(names: Iterable[str]) -> set[str]:
    return {n for n in map(normalize_tag, names) if n}


__all__ = ["EmbeddedTagger", "prototype_sums", "student_vocabulary"]
