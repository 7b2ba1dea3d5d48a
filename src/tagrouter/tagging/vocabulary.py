"""The tag vocabulary: normalise free-form tags, drop rare ones, merge near-duplicates (DBSCAN over tag
embeddings, as in the paper) and align new free-form tags to it by embedding similarity."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn import config_context
from sklearn.cluster import DBSCAN

from tagrouter.embedding import Embedder
from tagrouter.errors import ArtifactError
from tagrouter.fileio import atomic_write_bytes, atomic_write_json
from tagrouter.tagging.normalize import normalize_tag

#: Tags embedded at once while building a vocabulary.
EMBED_TAGS = 8192
#: Megabytes of pairwise tag distances DBSCAN computes at a time.
DBSCAN_WORKING_MB = 64
#: Cosine similarity below which a free-form tag is not aligned to any vocabulary tag.
DEFAULT_ALIGN_CUTOFF = 0.55


@dataclass
class Vocabulary:
    """Canonical tags, their history counts, the variants merged into each, and their text embeddings."""

    tags: list[str]
    counts: list[int]
    aliases: dict[str, str] = field(default_factory=dict)
    embeddings: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.index = {tag: i for i, tag in enumerate(self.tags)}
        for tag in self.tags:
            self.aliases.setdefault(tag, tag)

    def __len__(self) -> int:
        return len(self.tags)

    def align(
        self, raw_tags: Sequence[Sequence[str]], embedder: Embedder, cutoff: float = DEFAULT_ALIGN_CUTOFF
    ) -> list[list[str]]:
        """Map free-form tags onto the vocabulary: exact (after normalisation) or alias match first, then the
        most similar vocabulary tag by embedding if its cosine similarity is at least ``cutoff``; tags
        that match nothing are dropped. Order is kept, duplicates removed. A ``cutoff`` above 1 accepts
        no embedding match, so the embedding step is skipped (exact and alias matches only)."""
        if self.embeddings is None:
            raise ValueError("this vocabulary has no embeddings; build it with build_vocabulary()")
        normalized = [[normalize_tag(t) for t in tags] for tags in raw_tags]
        nearest: dict[str, str] = {}
        unknown = (
            [] if cutoff > 1 else sorted({t for ts in normalized for t in ts if t and t not in self.aliases})
        )
        if unknown:
            sims = embedder.embed(unknown) @ self.embeddings.T
            best = sims.argmax(axis=1)
            for text, j, row in zip(unknown, best, sims, strict=True):
                if row[j] >= cutoff:
                    nearest[text] = self.tags[j]
        aligned = []
        for tags in normalized:
            out: list[str] = []
            for t in tags:
                canonical = self.aliases.get(t) if t else None
                canonical = canonical or (nearest.get(t) if t else None)
                if canonical and canonical not in out:
                    out.append(canonical)
            aligned.append(out)
        return aligned

    def save(self, folder: Path) -> None:
        atomic_write_json(
            folder / "vocabulary.json", {"tags": self.tags, "counts": self.counts, "aliases": self.aliases}
        )
        if self.embeddings is not None:
            atomic_write_bytes(folder / "tag_embeddings.npy", _npy_bytes(self.embeddings))

    @classmethod
    def load(cls, folder: Path) -> Vocabulary:
        try:
            raw = json.loads((folder / "vocabulary.json").read_text(encoding="utf-8"))
            embeddings_path = folder / "tag_embeddings.npy"
            embeddings = np.load(embeddings_path) if embeddings_path.exists() else None
            vocab = cls(tags=raw["tags"], counts=raw["counts"], aliases=raw["aliases"], embeddings=embeddings)
        except (OSError, ValueError, KeyError) as exc:
            raise ArtifactError(f"{folder}: damaged tag vocabulary ({exc})") from None
        if embeddings is not None and embeddings.shape[0] != len(vocab.tags):
            raise ArtifactError(f"{folder}: {embeddings.shape[0]} tag embeddings for {len(vocab.tags)} tags")
        return vocab


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def build_vocabulary(
    tag_lists: Iterable[Sequence[str]],
    embedder: Embedder,
    *,
    min_count: int = 5,
    merge_distance: float = 0.1,
    keep: Iterable[str] = (),
) -> Vocabulary:
    """Build a vocabulary from the teacher's tags of many queries, as in the paper.

    1. normalise every tag (:func:`normalize_tag`), counting each tag once per query (:func:`tag_counts`);
    2. drop tags seen in fewer than ``min_count`` queries (tags in ``keep`` always stay);
    3. merge near-duplicates: DBSCAN (``min_samples=1``, cosine distance ``merge_distance``) over the tag
       embeddings; each cluster becomes its most frequent member, the others its aliases.
    """
    return vocabulary_from_counts(
        tag_counts(tag_lists), embedder, min_count=min_count, merge_distance=merge_distance, keep=keep
    )


def tag_counts(tag_lists: Iterable[Sequence[str]]) -> Counter[str]:
    """In how many queries each normalised tag appears; counts of parts of a history add up."""
    counts: Counter[str] = Counter()
    for tags in tag_lists:
        counts.update({t for t in (normalize_tag(x) for x in tags) if t})
    return counts


def vocabulary_from_counts(
    counts: Counter[str],
    embedder: Embedder,
    *,
    min_count: int = 5,
    merge_distance: float = 0.1,
    keep: Iterable[str] = (),
) -> Vocabulary:
    """Steps 2 and 3 of :func:`build_vocabulary`, from the counts of :func:`tag_counts`."""
    keep = {t for t in (normalize_tag(x) for x in keep) if t}
    kept = sorted(t for t, n in counts.items() if n >= min_count or t in keep)
    if not kept:
        raise ValueError(f"no tag is seen in at least {min_count} queries; lower min_count")
    chunks = range(0, len(kept), EMBED_TAGS)  # bounds the tokens × 256 matrix of one embedding call
    vectors = np.concatenate([embedder.embed(kept[i : i + EMBED_TAGS]) for i in chunks])
    with config_context(working_memory=DBSCAN_WORKING_MB):  # sklearn's default chunk is 1 GB of distances
        labels = DBSCAN(eps=merge_distance, min_samples=1, metric="cosine").fit_predict(vectors)
    clusters: dict[int, list[str]] = {}
    for tag, label in zip(kept, labels, strict=True):
        clusters.setdefault(int(label), []).append(tag)
    position = {tag: i for i, tag in enumerate(kept)}
    tags, tag_counts, aliases, rows = [], [], {}, []
    for members in clusters.values():
        pinned = [m for m in members if m in keep]
        head = min(pinned or members, key=lambda t: (-counts[t], len(t), t))
        for member in members:
            aliases[member] = head
        tags.append(head)
        tag_counts.append(sum(counts[m] for m in members))
        rows.append(position[head])
    order = np.argsort([-c for c in tag_counts], kind="stable")
    tags = [tags[i] for i in order]
    return Vocabulary(
        tags=tags,
        counts=[tag_counts[i] for i in order],
        aliases=aliases,
        embeddings=vectors[[rows[i] for i in order]],
    )
