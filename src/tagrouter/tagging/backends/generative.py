"""Generative taggers: a text-generation backend (the TagGenerator through ``transformers``, any
OpenAI-compatible chat endpoint) behind the :class:`~tagrouter.tagging.base.Tagger` interface.

A backend writes free text for each query; :func:`~tagrouter.tagging.parsing.parse_tags` reads the tags
out of it. Without a vocabulary, :class:`GenerativeTagger` returns those tags normalised
(:func:`~tagrouter.tagging.normalize.normalize_tag`): the form a teacher hands to ``build_vocabulary``. With
a vocabulary, every tag is aligned to it (:meth:`Vocabulary.align`: exact or alias match, else the most
similar vocabulary tag by embedding if its cosine similarity is at least ``cutoff``, else dropped), so that
the router's tag table stays dense. A router fitted with a generative tagger gets its vocabulary from the
backend's own tags of the history (:meth:`GenerativeTagger.fit_vocabulary`) or from a teacher's vocabulary
(``tagrouter vocab build``). Saving stores the backend's spec and the vocabulary, never model weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tagrouter.embedding import Embedder, default_embedder
from tagrouter.errors import ArtifactError
from tagrouter.tagging.backends.chat import BackendError, TextGenerator
from tagrouter.tagging.normalize import normalize_tag
from tagrouter.tagging.parsing import parse_tags
from tagrouter.tagging.vocabulary import DEFAULT_ALIGN_CUTOFF, Vocabulary, build_vocabulary

Progress = Callable[[str, int, int], None]


@dataclass
class GenerativeTagger:
    """Tags queries with a :class:`TextGenerator`; see the module docstring.

    ``spec`` is the backend spec that :func:`tagrouter.tagging.registry.generator_from_spec` rebuilds the
    backend from when a saved router is loaded.
    """

    generator: TextGenerator
    spec: str
    vocabulary: Vocabulary | None = None
    cutoff: float = DEFAULT_ALIGN_CUTOFF
    max_tags: int = 8
    embedder: Embedder | None = None
    _known: dict[str, list[str]] = field(default_factory=dict, init=False, repr=False)
    kind = "generative"

    def parsed_tags(self, texts: Sequence[str]) -> list[list[str]]:
        """The tags as the backend wrote them (parsed, not normalised); each distinct text is generated once,
        and texts seen by :meth:`fit_vocabulary` are not generated again."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._known))
        fresh: dict[str, list[str]] = {}
        if todo:
            answers = self.generator.generate(todo)
            if len(answers) != len(todo):
                raise BackendError(f"backend {self.spec} gave {len(answers)} answers for {len(todo)} queries")
            fresh = {t: parse_tags(a, max_tags=self.max_tags) for t, a in zip(todo, answers, strict=True)}
        return [list(fresh[t] if t in fresh else self._known[t]) for t in texts]

    def tag(self, texts: Sequence[str]) -> list[list[str]]:
        """Vocabulary tags of each text (aligned), or its normalised free-form tags without a vocabulary."""
        parsed = self.parsed_tags(texts)
        if self.vocabulary is not None:
            return self.vocabulary.align(parsed, self._embedder(), cutoff=self.cutoff)
        return [list(dict.fromkeys(t for t in map(normalize_tag, tags) if t)) for tags in parsed]

    def fit_vocabulary(
        self,
        queries: Sequence[str],
        *,
        min_count: int = 3,
        merge_distance: float = 0.1,
        batch_size: int = 256,
        progress: Progress | None = None,
    ) -> Vocabulary:
        """Tag ``queries`` (the history), build the vocabulary from those tags (:func:`build_vocabulary`)
        and align to it from now on. The queries' tags are kept, so fitting a router on the same history
        does not generate them again."""
        queries = list(dict.fromkeys(queries))
        for start in range(0, len(queries), batch_size):
            batch = queries[start : start + batch_size]
            self._known.update(zip(batch, self.parsed_tags(batch), strict=True))
            if progress:
                progress("generating tags", min(start + batch_size, len(queries)), len(queries))
        try:
            self.vocabulary = build_vocabulary(
                [self._known[q] for q in queries],
                self._embedder(),
                min_count=min_count,
                merge_distance=merge_distance,
            )
        except ValueError as exc:
            raise BackendError(f"backend {self.spec}: {exc}") from None
        return self.vocabulary

    def fitted(
        self,
        queries: Sequence[str],
        *,
        min_count: int = 3,
        merge_distance: float = 0.1,
        progress: Progress | None = None,
    ) -> GenerativeTagger:
        """A copy of this tagger with a vocabulary fitted on ``queries`` (:meth:`fit_vocabulary`). Copies
        share the backend and the generated tags, so over cross-validation folds each distinct query is
        generated once."""
        copy = GenerativeTagger(self.generator, self.spec, None, self.cutoff, self.max_tags, self.embedder)
        copy._known = self._known
        copy.fit_vocabulary(queries, min_count=min_count, merge_distance=merge_distance, progress=progress)
        return copy

    def _embedder(self) -> Embedder:
        if self.embedder is None:
            self.embedder = default_embedder()
        return self.embedder

    def save(self, folder: Path) -> dict[str, Any]:
        if self.vocabulary is not None:
            self.vocabulary.save(folder)
        return {"spec": self.spec, "cutoff": self.cutoff, "max_tags": self.max_tags}

    @classmethod
    def load(
        cls, folder: Path, config: dict[str, Any], generator: Callable[[str], TextGenerator]
    ) -> GenerativeTagger:
        """The tagger saved in ``folder`` with ``config``; ``generator`` rebuilds the backend from its spec."""
        try:
            spec, cutoff, max_tags = str(config["spec"]), float(config["cutoff"]), int(config["max_tags"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{folder}: damaged generative tagger configuration ({exc})") from None
        vocabulary = Vocabulary.load(folder) if (folder / "vocabulary.json").exists() else None
        return cls(generator(spec), spec, vocabulary, cutoff=cutoff, max_tags=max_tags)


__all__ = ["GenerativeTagger"]
