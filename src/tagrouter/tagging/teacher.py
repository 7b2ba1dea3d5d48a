"""The offline teacher: free-form tags for history queries, without an LLM.

The paper's teacher is a large LLM (ERNIE-4.0-Turbo). None can run offline here, so the default teacher
combines two readable, deterministic sources, each embedded with the default embedder:

- *keyphrases* (fine granularity): the query's 1–3-word phrases that are most similar to the whole query
  (the KeyBERT idea), skipping phrases too similar to one already taken;
- *seed tags* (coarse granularity): the task type and the domain of the hand-written taxonomy
  (:mod:`tagrouter.tagging.taxonomy`) whose descriptions are closest to the query.

Any :class:`~tagrouter.tagging.base.Tagger` (an LLM backend, say) can be the teacher instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tagrouter.embedding import Embedder, default_embedder
from tagrouter.tagging.normalize import is_stopword, normalize_tag
from tagrouter.tagging.taxonomy import DOMAINS, TASK_TYPES

_SEGMENTS = re.compile(r"[.,;:!?()\[\]{}\"\n]+")
_WORDS = re.compile(r"[A-Za-z][A-Za-z0-9+#'\-]*")


def candidate_phrases(text: str, max_words: int = 3) -> list[str]:
    """Normalised 1–3-word phrases of ``text`` that neither start nor end with a stop word, and hold no
    one-letter word (a variable name such as 'x') but the language names 'c' and 'r'."""
    found: dict[str, None] = {}
    for segment in _SEGMENTS.split(text.lower()):
        words = _WORDS.findall(segment)
        for n in range(1, max_words + 1):
            for i in range(len(words) - n + 1):
                gram = words[i : i + n]
                if is_stopword(gram[0]) or is_stopword(gram[-1]) or (n == 1 and len(gram[0]) < 3):
                    continue
                if any(len(w) == 1 and w not in ("c", "r") for w in gram):
                    continue
                tag = normalize_tag(" ".join(gram))
                if tag:
                    found.setdefault(tag, None)
    return list(found)


@dataclass
class KeyphraseTeacher:
    """Offline teacher: ``keyphrases`` fine tags plus the closest task type and domain of the taxonomy."""

    embedder: Embedder | None = None
    keyphrases: int = 12  # measured: 12 beat 4 and 8 (docs/results.md)
    redundancy: float = 0.8

    def __post_init__(self) -> None:
        self.embedder = self.embedder or default_embedder()
        self._task_names = list(TASK_TYPES)
        self._domain_names = list(DOMAINS)
        self._task_vectors = self.embedder.embed(list(TASK_TYPES.values()))
        self._domain_vectors = self.embedder.embed(list(DOMAINS.values()))

    def tag(self, texts: Sequence[str]) -> list[list[str]]:
        queries = self.embedder.embed(list(texts))
        candidates = [candidate_phrases(t) for t in texts]
        vocabulary = sorted({c for cs in candidates for c in cs})
        position = {c: i for i, c in enumerate(vocabulary)}
        phrase_vectors = self.embedder.embed(vocabulary)
        task = (queries @ self._task_vectors.T).argmax(axis=1)
        domain = (queries @ self._domain_vectors.T).argmax(axis=1)
        out = []
        for i, cands in enumerate(candidates):
            tags = [self._task_names[task[i]], self._domain_names[domain[i]]]
            if cands:
                vectors = phrase_vectors[[position[c] for c in cands]]
                chosen: list[int] = []
                for j in np.argsort(-(vectors @ queries[i]), kind="stable"):
                    if len(chosen) == self.keyphrases:
                        break
                    if chosen and float((vectors[chosen] @ vectors[j]).max()) > self.redundancy:
                        continue
                    chosen.append(int(j))
                tags += [cands[j] for j in chosen]
            out.append(tags)
        return out
