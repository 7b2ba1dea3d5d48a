"""Tagger specs: one string that names a tagger, for the command line and for saved routers.

=======================================  ======================================================================
``embedded``                             the offline default, fitted on the history (keyphrase teacher)
``embedded:DIR``                         an embedded student saved by ``tagrouter vocab build --student``
``transformers:PATH_OR_ID[?OPTIONS]``    a causal LM (default ``itpossible/TagGenerator``) via transformers
``openai:MODEL@URL[?OPTIONS]``           an OpenAI-compatible chat endpoint (key from ``$OPENAI_API_KEY``)
``keyphrase``                            the offline keyphrase teacher (teacher specs only)
=======================================  ======================================================================

Options (``?name=value&...``) of the generative backends: transformers: ``device``, ``dtype``,
``batch_size``, ``max_new_tokens``, ``max_query_tokens``, ``prompt``; openai: ``api_key_env``, ``prompt``,
``concurrency``, ``timeout``, ``retries``, ``backoff``, ``max_new_tokens``; both, as a router's tagger:
``vocabulary`` (a folder written by ``tagrouter vocab build``; default: build one from the backend's own
tags of the history), ``min_count``, ``merge_distance``, ``cutoff`` (alignment, default
:data:`~tagrouter.tagging.vocabulary.DEFAULT_ALIGN_CUTOFF`), ``max_tags``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from tagrouter.embedding import Embedder
from tagrouter.errors import TagRouterError
from tagrouter.tagging.base import Tagger
from tagrouter.tagging.saving import load_tagger_folder
from tagrouter.tagging.vocabulary import Vocabulary

Progress = Callable[[str, int, int], None]
BACKENDS = ("embedded", "transformers", "openai", "keyphrase")
#: Options that set how a generative tagger maps its tags to a vocabulary (not the backend itself).
TAGGER_OPTIONS: dict[str, type] = {
    "vocabulary": str,
    "min_count": int,
    "merge_distance": float,
    "cutoff": float,
    "max_tags": int,
}
#: Backend options that change how answers are obtained, not what they say (left out of :meth:`identity`).
TRANSPORT_OPTIONS = frozenset(
    {"device", "dtype", "batch_size", "concurrency", "timeout", "retries", "backoff", "api_key_env"}
)


class SpecError(TagRouterError, ValueError):
    """A tagger spec that cannot be understood; the message shows the accepted forms."""


@dataclass(frozen=True)
class TaggerSpec:
    """A parsed spec: ``backend``, ``target`` (path, model id, ``MODEL@URL`` or folder) and ``options``."""

    backend: str
    target: str = ""
    options: dict[str, str] = field(default_factory=dict)

    def backend_spec(self) -> str:
        """The spec of the backend alone (no vocabulary options): what a saved router stores."""
        return self._text({k: v for k, v in self.options.items() if k not in TAGGER_OPTIONS})

    def identity(self) -> str:
        """What determines the backend's answers (no vocabulary or transport options, options sorted): the
        key under which a teacher's tags are cached."""
        skipped = TAGGER_OPTIONS.keys() | TRANSPORT_OPTIONS
        return self._text(dict(sorted((k, v) for k, v in self.options.items() if k not in skipped)))

    def _text(self, options: dict[str, str]) -> str:
        query = f"?{urlencode(options)}" if options else ""
        return f"{self.backend}:{self.target}{query}" if self.target else f"{self.backend}{query}"


def parse_spec(spec: str) -> TaggerSpec:
    """Split ``BACKEND[:TARGET][?OPTIONS]``; unknown backends and malformed options raise :class:`SpecError`."""
    text = spec.strip()
    head, _, query = text.partition("?")
    backend, _, target = head.partition(":")
    backend = backend.strip().lower()
    if backend not in BACKENDS:
        raise SpecError(f"unknown tagger {spec!r}; {_FORMS}")
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise SpecError(f"tagger spec {spec!r}: options must look like ?name=value&name=value") from None
    target = target.strip()
    if backend == "transformers" and target and Path(target).expanduser().exists():
        target = str(Path(target).expanduser().resolve())  # a saved router then loads from any folder
    return TaggerSpec(backend, target, options)


_FORMS = (
    "expected 'embedded', 'embedded:DIR', 'transformers:PATH_OR_ID[?device=cuda&batch_size=64]', "
    "'openai:MODEL@URL[?prompt=taggenerator]' or (as a teacher) 'keyphrase'"
)


def generator_from_spec(spec: str | TaggerSpec) -> Any:
    """The text-generation backend of a ``transformers:`` or ``openai:`` spec (nothing is loaded yet)."""
    from tagrouter.tagging.backends.openai_chat import OpenAIChatGenerator
    from tagrouter.tagging.backends.transformers_lm import TAGGENERATOR_ID, TransformersGenerator

    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    options = {k: v for k, v in parsed.options.items() if k not in TAGGER_OPTIONS}
    if parsed.backend == "transformers":
        return _build(TransformersGenerator, parsed, {"model": parsed.target or TAGGENERATOR_ID}, options)
    if parsed.backend == "openai":
        model, at, url = parsed.target.rpartition("@")
        if not at or not model or not url:
            raise SpecError(f"tagger spec {parsed.backend_spec()!r}: expected openai:MODEL@URL")
        return _build(OpenAIChatGenerator, parsed, {"model": model, "base_url": url}, options)
    raise SpecError(f"tagger {parsed.backend!r} is not a generative backend; {_FORMS}")


def _build(cls: type, parsed: TaggerSpec, fixed: dict[str, Any], options: dict[str, str]) -> Any:
    settable = {f.name: f.type for f in fields(cls) if f.init and f.name not in fixed}
    settable.pop("min_new_tokens", None)  # speed measurement only
    kwargs = dict(fixed)
    for name, value in options.items():
        if name not in settable:
            raise SpecError(
                f"tagger spec {parsed.backend_spec()!r}: unknown option {name!r} for {parsed.backend}; "
                f"known: {', '.join([*settable, *TAGGER_OPTIONS])}"
            )
        kwargs[name] = _convert(parsed, name, value, {"int": int, "float": float}.get(settable[name], str))
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise SpecError(f"tagger spec {parsed.backend_spec()!r}: {exc}") from None


def _convert(parsed: TaggerSpec, name: str, value: str, kind: type) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise SpecError(
            f"tagger spec {parsed.backend_spec()!r}: option {name}={value!r} must be a {kind.__name__}"
        ) from None


def teacher_from_spec(spec: str, *, embedder: Embedder | None = None) -> Tagger:
    """A tagger that gives free-form (normalised, unaligned) tags: ``keyphrase`` or a generative spec."""
    parsed = parse_spec(spec)
    if parsed.backend == "keyphrase":
        from tagrouter.tagging.teacher import KeyphraseTeacher

        if parsed.target or parsed.options:
            raise SpecError(f"teacher spec {spec!r}: 'keyphrase' takes no options")

        return KeyphraseTeacher(embedder=embedder)
    if parsed.backend == "embedded":
        raise SpecError("'embedded' is a student, not a teacher; use 'keyphrase' for the offline teacher")
    return _generative(parsed, embedder)


def tagger_from_spec(
    spec: str = "embedded",
    *,
    queries: Sequence[str] | None = None,
    embedder: Embedder | None = None,
    progress: Progress | None = None,
) -> Tagger:
    """The router tagger that ``spec`` names, ready to tag.

    ``queries`` (the history's) are needed to fit ``embedded`` and to build a generative backend's
    vocabulary from its own tags when the spec names no ``vocabulary`` folder.
    """
    parsed = parse_spec(spec)
    if parsed.backend == "embedded":
        if parsed.options:
            raise SpecError(f"tagger spec {spec!r}: 'embedded' takes no options")
        if parsed.target:
            return load_tagger_folder(Path(parsed.target), kind="embedded")
        if queries is None:
            raise SpecError("the 'embedded' tagger is fitted on the history: pass its queries")
        from tagrouter.tagging.embedded import EmbeddedTagger

        return EmbeddedTagger.fit(queries, embedder=embedder, progress=progress)
    if parsed.backend == "keyphrase":
        raise SpecError("'keyphrase' is a teacher only; a router needs 'embedded' or a generative backend")
    tagger = _generative(parsed, embedder)
    if "vocabulary" in parsed.options:
        tagger.vocabulary = _load_vocabulary(Path(parsed.options["vocabulary"]))
    elif queries is not None:
        tagger.fit_vocabulary(
            queries,
            min_count=_option(parsed, "min_count", 3),
            merge_distance=_option(parsed, "merge_distance", 0.1),
            progress=progress,
        )
    return tagger


def _generative(parsed: TaggerSpec, embedder: Embedder | None) -> Any:
    from tagrouter.tagging.backends.generative import GenerativeTagger
    from tagrouter.tagging.vocabulary import DEFAULT_ALIGN_CUTOFF

    return GenerativeTagger(
        generator_from_spec(parsed),
        parsed.backend_spec(),
        cutoff=_option(parsed, "cutoff", DEFAULT_ALIGN_CUTOFF),
        max_tags=_option(parsed, "max_tags", 8),
        embedder=embedder,
    )


def _option(parsed: TaggerSpec, name: str, default: Any) -> Any:
    value = parsed.options.get(name)
    return default if value is None else _convert(parsed, name, value, TAGGER_OPTIONS[name])


def _load_vocabulary(folder: Path) -> Vocabulary:
    if not (folder / "vocabulary.json").is_file():
        raise SpecError(f"{folder}: no vocabulary.json there; write one with 'tagrouter vocab build'")
    vocabulary = Vocabulary.load(folder)
    if vocabulary.embeddings is None:
        raise SpecError(f"{folder}: the vocabulary has no tag_embeddings.npy, which alignment needs")
    return vocabulary


__all__ = [
    "SpecError",
    "TaggerSpec",
    "generator_from_spec",
    "parse_spec",
    "tagger_from_spec",
    "teacher_from_spec",
]
