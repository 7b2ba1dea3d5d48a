"""TagRouter as a benchmarked :class:`~tagrouter.evaluation.base.RouterMethod`.

``fit`` calls :meth:`TagRouter.fit` — the public path a user calls — on the training fold's judged
records (:attr:`FoldData.history`: the pool and context models' records of the training queries, as the
history holds them, one per judged query and model) and the setup's catalogue. ``predict`` is the fitted
router's scores.

Speed: the tagger depends only on the training queries, and the offline teacher is deterministic per query,
so :class:`SharedFits` caches the teacher's tags per query text and one student tagger per training set
(the same tagger ``TagRouter.fit`` builds by default from those queries), handed to ``TagRouter.fit``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tagrouter.catalog import Catalog
from tagrouter.embedding import Embedder, default_embedder
from tagrouter.evaluation.base import FoldData
from tagrouter.router import TagRouter
from tagrouter.scoring import Scorer
from tagrouter.tagging.base import Tagger
from tagrouter.tagging.embedded import EmbeddedTagger
from tagrouter.tagging.registry import router_spec, tagger_from_spec, vocabulary_options
from tagrouter.tagging.teacher import KeyphraseTeacher


@dataclass
class SharedFits:
    """Caches shared by every TagRouter variant of a benchmark run (see the module docstring)."""

    embedder: Embedder = field(default_factory=default_embedder)
    #: the tagger spec of the default tagger (``tagger(queries, {})``): ``embedded`` (None: the same) is
    #: the student of the offline teacher, built here from the cached teacher tags; any other spec of
    #: :func:`~tagrouter.tagging.registry.tagger_from_spec` is fitted on each training set
    spec: str | None = None
    #: the default teacher's tags per query text
    teacher_tags: dict[str, list[str]] = field(default_factory=dict)
    _other_teachers: dict[int, dict[str, list[str]]] = field(default_factory=dict)
    _taggers: dict[tuple, MemoTagger] = field(default_factory=dict)
    _base: Tagger | None = None

    def __post_init__(self) -> None:
        if self.spec is not None:
            parsed = router_spec(self.spec)
            if parsed.kind == "embedded" and not parsed.target:
                self.spec = None  # the default, on its fast cached path

    @property
    def parallel_fits(self) -> bool:
        """Whether training sets may be fitted in separate processes (False for a spec whose fits share
        generated tags, so that each query is generated once)."""
        return self.spec is None

    def prime(self, queries: Sequence[str], options: dict[str, Any], tags: dict[str, list[str]]) -> None:
        """Install the tags that :meth:`tagger` ``(queries, options)`` gives each text (computed elsewhere,
        e.g. in a worker process); texts not in ``tags`` are tagged by a fresh fit when asked."""
        key = (_digest(queries), tuple(sorted(options.items())))
        if key in self._taggers:
            self._taggers[key].memo.update(tags)
        else:
            self._taggers[key] = MemoTagger(_LazyTagger(self, list(queries), dict(options)), dict(tags))

    def teacher_tags_of(self, queries: Sequence[str], keyphrases: int | None = None) -> list[list[str]]:
        """The offline teacher's tags of each query (``keyphrases`` per query; default: the teacher's
        default), computed once per distinct text."""
        known = self.teacher_tags if keyphrases is None else self._other_teachers.setdefault(keyphrases, {})
        missing = list(dict.fromkeys(q for q in queries if q not in known))
        if missing:
            options = {} if keyphrases is None else {"keyphrases": keyphrases}
            tags = KeyphraseTeacher(embedder=self.embedder, **options).tag(missing)
            known.update(zip(missing, tags, strict=True))
        return [known[q] for q in queries]

    def tagger(self, queries: Sequence[str], options: dict[str, Any]) -> MemoTagger:
        """The tagger fitted on the training ``queries``, remembering the tags it gave each text. With
        ``options`` empty: the run's tagger (:attr:`spec`; by default the student distilled from the
        training queries' teacher tags, what ``TagRouter.fit`` builds by default). Otherwise the embedded
        student with ``options``: those of :meth:`EmbeddedTagger.from_teacher_tags`, plus
        ``teacher_keyphrases``."""
        key = (_digest(queries), tuple(sorted(options.items())))
        if key not in self._taggers:
            self._taggers[key] = MemoTagger(self._fit_tagger(queries, options))
        return self._taggers[key]

    def _fit_tagger(self, queries: Sequence[str], options: dict[str, Any]) -> Tagger:
        if self.spec is not None and not options:
            return self._spec_tagger(queries)
        student_options = dict(options)
        keyphrases = student_options.pop("teacher_keyphrases", None)
        return EmbeddedTagger.from_teacher_tags(
            queries, self.teacher_tags_of(queries, keyphrases), embedder=self.embedder, **student_options
        )

    def _spec_tagger(self, queries: Sequence[str]) -> Tagger:
        """The spec's tagger for one training set: a fixed tagger (``embedded:DIR``, a generative backend
        with ``vocabulary=DIR``) as it is; a generative backend gets a vocabulary fitted on ``queries``
        (``fitted``: the copies share the generated tags, so each query is generated once)."""
        assert self.spec is not None
        parsed = router_spec(self.spec)
        if self._base is None:
            self._base = tagger_from_spec(self.spec, embedder=self.embedder)
        fitted = getattr(self._base, "fitted", None)
        if fitted is None or "vocabulary" in parsed.options:
            return self._base
        return fitted(list(queries), **vocabulary_options(parsed))


@dataclass
class _LazyTagger:
    """Fits the tagger of a primed training set only if a text outside its primed tags is asked for."""

    shared: SharedFits
    queries: list[str]
    options: dict[str, Any]
    inner: Tagger | None = None

    def tag(self, texts: Sequence[str]) -> list[list[str]]:
        if self.inner is None:
            self.inner = self.shared._fit_tagger(self.queries, self.options)
        return self.inner.tag(texts)


@dataclass
class MemoTagger:
    """A tagger that tags each distinct text once (the student is deterministic per text)."""

    inner: Tagger
    memo: dict[str, list[str]] = field(default_factory=dict)

    def tag(self, texts: Sequence[str]) -> list[list[str]]:
        missing = list(dict.fromkeys(t for t in texts if t not in self.memo))
        if missing:
            self.memo.update(zip(missing, self.inner.tag(missing), strict=True))
        return [self.memo[t] for t in texts]


class TagRouterMethod:
    """TagRouter under test: the default configuration, or a variant with another scorer or tagger
    options. ``catalog`` holds the setup's models and prices."""

    def __init__(
        self,
        name: str,
        catalog: Catalog,
        shared: SharedFits,
        *,
        scorer: Scorer | None = None,
        tagger_options: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.catalog = catalog
        self.shared = shared
        self.scorer = scorer
        self.tagger_options = dict(tagger_options or {})
        self.router: TagRouter | None = None

    def fit(self, train: FoldData) -> None:
        if train.history is None:
            raise ValueError(
                f"{self.name}: TagRouter learns from the fold's judged records (FoldData.history)"
            )
        tagger = self.shared.tagger(train.queries, self.tagger_options)
        self.router = TagRouter.fit(train.history, self.catalog, tagger=tagger, scorer=self.scorer)
        self._strong_last = bool(np.argmax(train.costs.mean(axis=0)) == train.costs.shape[1] - 1)

    def chosen_knob(self) -> float | None:
        """The knob the fitted router would deploy (its self-tuned default point), when it is one of the
        protocol's: ``utility`` on a pool, ``gap`` on a pair whose strong model is the dearer; else None
        (the protocol chooses θ)."""
        if self.router is None or self.router.model.tuning is None:
            return None
        rule, pair = self.router.decider.rule, len(self.catalog.names) == 2
        if (pair and rule == "gap" and self._strong_last) or (not pair and rule == "utility"):
            return self.router.decider.knob
        return None

    def predict(self, queries: list[str], embeddings: np.ndarray) -> np.ndarray:
        if self.router is None:
            raise RuntimeError(f"{self.name}: call fit() before predict()")
        return self.router.model.score(queries)[1]


def _digest(texts: Sequence[str]) -> str:
    h = hashlib.sha1()
    for text in texts:
        h.update(text.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()
