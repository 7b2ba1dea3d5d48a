"""The taggers by name: one table, :data:`BACKENDS`, of what a tagger spec can name, and the functions that
read a spec, build the tagger or teacher it names, and save and load taggers. Adding a tagger is one
:class:`Backend` entry.

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

A saved tagger is its own files plus an entry ``{"kind": ..., "config": ...}``; ``kind`` picks the entry
of :data:`BACKENDS` that loads it. Heavy dependencies (transformers, httpx) load only when a backend runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from tagrouter.embedding import Embedder
from tagrouter.errors import ArtifactError
from tagrouter.fileio import atomic_write_json
from tagrouter.tagging.backends.chat import TextGenerator
from tagrouter.tagging.backends.generative import GenerativeTagger
from tagrouter.tagging.base import PersistentTagger, Tagger
from tagrouter.tagging.embedded import EmbeddedTagger
from tagrouter.tagging.spec import TAGGER_OPTIONS, Spec, SpecError, parse_spec, resolved_path
from tagrouter.tagging.vocabulary import DEFAULT_ALIGN_CUTOFF, Vocabulary

Progress = Callable[[str, int, int], None]
#: The file that names the kind of a tagger saved on its own in a folder.
TAGGER_FILE = "tagger.json"


@dataclass(frozen=True)
class Fitting:
    """What building a router's tagger may use: the history's ``queries`` (to fit ``embedded`` or a
    generative backend's vocabulary), the ``embedder`` and a ``progress`` callback."""

    queries: Sequence[str] | None = None
    embedder: Embedder | None = None
    progress: Progress | None = None


@dataclass(frozen=True)
class Backend:
    """One entry of :data:`BACKENDS`: a tagger spec's ``KIND`` and what it can do.

    ``form``: its spec forms, for messages; ``parse``: checks and normalises a parsed spec; ``router``:
    builds a router's tagger (None: a teacher only); ``teacher``: builds a teacher (None: a student only);
    ``generator``: the text-generation backend of a generative tagger; ``kind`` and ``load``: the kind its
    saved taggers carry, and how one loads from its folder and config.
    """

    form: str
    parse: Callable[[Spec], Spec]
    router: Callable[[Spec, Fitting], Tagger] | None = None
    teacher: Callable[[Spec, Embedder | None], Tagger] | None = None
    generator: Callable[[Spec], TextGenerator] | None = None
    kind: str | None = None
    load: Callable[[Path, dict[str, Any]], Tagger] | None = None


# ---- reading specs ------------------------------------------------------------------------------------------
def parse_tagger(spec: str) -> Spec:
    """The parsed tagger spec (``KIND`` an entry of :data:`BACKENDS`, checked by that entry)."""
    parsed = parse_spec(spec, BACKENDS, what="tagger", forms=_forms())
    return BACKENDS[parsed.kind].parse(parsed)


def router_spec(spec: str) -> Spec:
    """:func:`parse_tagger` of a spec that must name a router's tagger (not a teacher only)."""
    parsed = parse_tagger(spec)
    if BACKENDS[parsed.kind].router is None:
        routers = ", ".join(repr(k) for k, b in BACKENDS.items() if b.router)
        raise SpecError(f"{parsed.kind!r} is a teacher only; a router's tagger is one of {routers}")
    return parsed


def _forms() -> str:
    return "expected " + ", ".join(repr(b.form) for b in BACKENDS.values())


def _no_options(parsed: Spec) -> Spec:
    if parsed.options:
        raise SpecError(f"tagger spec {parsed.backend_spec()!r}: {parsed.kind!r} takes no options")
    return parsed


def _local_or_hub(parsed: Spec) -> Spec:
    return Spec(parsed.kind, resolved_path(parsed.target), parsed.options)


def _endpoint(parsed: Spec) -> Spec:
    parsed.endpoint()
    return parsed


# ---- building -----------------------------------------------------------------------------------------------
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
    parsed = router_spec(spec)
    build = BACKENDS[parsed.kind].router
    assert build is not None  # router_spec checked it
    return build(parsed, Fitting(queries, embedder, progress))


def teacher_from_spec(spec: str, *, embedder: Embedder | None = None) -> Tagger:
    """A tagger that gives free-form (normalised, unaligned) tags: ``keyphrase`` or a generative spec."""
    parsed = parse_tagger(spec)
    build = BACKENDS[parsed.kind].teacher
    if build is None:
        teachers = ", ".join(repr(k) for k, b in BACKENDS.items() if b.teacher)
        raise SpecError(f"{parsed.kind!r} is a student, not a teacher; teachers: {teachers}")
    return build(parsed, embedder)


def generator_from_spec(spec: str | Spec) -> TextGenerator:
    """The text-generation backend of a generative spec (``transformers:``, ``openai:``); nothing is
    loaded yet."""
    parsed = parse_tagger(spec) if isinstance(spec, str) else spec
    build = BACKENDS[parsed.kind].generator
    if build is None:
        generative = ", ".join(repr(k) for k, b in BACKENDS.items() if b.generator)
        raise SpecError(f"tagger {parsed.kind!r} is not a generative backend; those are {generative}")
    return build(parsed)


def _embedded(parsed: Spec, fitting: Fitting) -> Tagger:
    if parsed.target:
        return load_tagger_folder(Path(parsed.target), kind=EmbeddedTagger.kind)
    if fitting.queries is None:
        raise SpecError("the 'embedded' tagger is fitted on the history: pass its queries")
    return EmbeddedTagger.fit(fitting.queries, embedder=fitting.embedder, progress=fitting.progress)


def _keyphrase(parsed: Spec, embedder: Embedder | None) -> Tagger:
    from tagrouter.tagging.teacher import KeyphraseTeacher

    return KeyphraseTeacher(embedder=embedder)


def _generative(parsed: Spec, embedder: Embedder | None) -> GenerativeTagger:
    return GenerativeTagger(
        generator_from_spec(parsed),
        parsed.backend_spec(),
        cutoff=parsed.option("cutoff", float, DEFAULT_ALIGN_CUTOFF),
        max_tags=parsed.option("max_tags", int, 8),
        embedder=embedder,
    )


def _generative_router(parsed: Spec, fitting: Fitting) -> Tagger:
    tagger = _generative(parsed, fitting.embedder)
    if "vocabulary" in parsed.options:
        tagger.vocabulary = _load_vocabulary(Path(parsed.options["vocabulary"]))
    elif fitting.queries is not None:
        tagger.fit_vocabulary(fitting.queries, **vocabulary_options(parsed), progress=fitting.progress)
    return tagger


def vocabulary_options(parsed: Spec) -> dict[str, Any]:
    """The spec's options of :meth:`GenerativeTagger.fit_vocabulary` (``min_count``, ``merge_distance``)
    that it sets, typed."""
    return {
        k: parsed.option(k, TAGGER_OPTIONS[k]) for k in ("min_count", "merge_distance") if k in parsed.options
    }


def _load_vocabulary(folder: Path) -> Vocabulary:
    if not (folder / "vocabulary.json").is_file():
        raise SpecError(f"{folder}: no vocabulary.json there; write one with 'tagrouter vocab build'")
    vocabulary = Vocabulary.load(folder)
    if vocabulary.embeddings is None:
        raise SpecError(f"{folder}: the vocabulary has no tag_embeddings.npy, which alignment needs")
    return vocabulary


def _transformers(parsed: Spec) -> TextGenerator:
    from tagrouter.tagging.backends.transformers_lm import TAGGENERATOR_ID, TransformersGenerator

    return _build(TransformersGenerator, parsed, {"model": parsed.target or TAGGENERATOR_ID})


def _openai(parsed: Spec) -> TextGenerator:
    from tagrouter.tagging.backends.openai_chat import OpenAIChatGenerator

    model, url = parsed.endpoint()
    return _build(OpenAIChatGenerator, parsed, {"model": model, "base_url": url})


def _build(cls: type, parsed: Spec, fixed: dict[str, Any]) -> Any:
    """``cls`` (a generator dataclass) with ``fixed`` arguments and the spec's backend options, each
    converted to its field's type; the vocabulary options are the tagger's, not the backend's."""
    settable = {f.name: f.type for f in fields(cls) if f.init and f.name not in fixed}
    settable.pop("min_new_tokens", None)  # speed measurement only
    known = {name: {"int": int, "float": float}.get(kind, str) for name, kind in settable.items()}
    options = parsed.typed_options({**known, **TAGGER_OPTIONS})
    backend = {name: value for name, value in options.items() if name not in TAGGER_OPTIONS}
    try:
        return cls(**fixed, **backend)
    except ValueError as exc:
        raise SpecError(f"tagger spec {parsed.backend_spec()!r}: {exc}") from None


# ---- saving and loading -------------------------------------------------------------------------------------
def save_tagger(tagger: Tagger, folder: Path) -> dict[str, Any]:
    """Save ``tagger`` into ``folder``; returns the entry to store with it (kind and config)."""
    if not isinstance(tagger, PersistentTagger) or _loader(tagger.kind) is None:
        raise ArtifactError(
            f"tagger {type(tagger).__name__} cannot be saved: it needs a 'kind' that an entry of "
            "tagrouter.tagging.registry.BACKENDS loads, and save()"
        )
    folder.mkdir(parents=True, exist_ok=True)
    return {"kind": tagger.kind, "config": tagger.save(folder)}


def load_tagger(folder: Path, entry: dict[str, Any]) -> Tagger:
    """Rebuild a tagger saved by :func:`save_tagger` from its folder and entry."""
    kind = entry.get("kind")
    load = _loader(kind)
    if load is None:
        known = sorted({b.kind for b in BACKENDS.values() if b.kind})
        raise ArtifactError(
            f"the saved tagger has kind {kind!r}, which this installation does not know "
            f"(known: {', '.join(known)}); upgrade tagrouter or refit with a known tagger"
        )
    return load(folder, entry.get("config", {}))


def save_tagger_folder(tagger: Tagger, folder: Path) -> None:
    """Save ``tagger`` on its own into ``folder`` (its files plus :data:`TAGGER_FILE` naming its kind)."""
    atomic_write_json(folder / TAGGER_FILE, save_tagger(tagger, folder))


def load_tagger_folder(folder: Path, kind: str | None = None) -> Tagger:
    """Load a tagger saved by :func:`save_tagger_folder` (of ``kind``, when given)."""
    path = folder / TAGGER_FILE
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{folder}: not a saved tagger (no {TAGGER_FILE})") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: damaged ({exc})") from None
    if kind is not None and entry.get("kind") != kind:
        raise ArtifactError(f"{folder}: holds a {entry.get('kind')!r} tagger, not {kind!r}")
    return load_tagger(folder, entry)


def _loader(kind: object) -> Callable[[Path, dict[str, Any]], Tagger] | None:
    return next((b.load for b in BACKENDS.values() if b.kind is not None and b.kind == kind), None)


def _load_generative(folder: Path, config: dict[str, Any]) -> Tagger:
    return GenerativeTagger.load(folder, config, generator_from_spec)


def _generative_backend(
    form: str, parse: Callable[[Spec], Spec], generator: Callable[[Spec], TextGenerator]
) -> Backend:
    """The entry of a text-generation backend: a :class:`GenerativeTagger` over its ``generator``."""
    return Backend(
        form,
        parse,
        router=_generative_router,
        teacher=_generative,
        generator=generator,
        kind=GenerativeTagger.kind,
        load=_load_generative,
    )


#: Every tagger a spec can name. A new tagger is one entry (its spec forms, parse and build functions, and
#: the kind and loader of its saved form when it can be saved with a router).
BACKENDS: dict[str, Backend] = {
    "embedded": Backend(
        "embedded[:DIR]",
        _no_options,
        router=_embedded,
        kind=EmbeddedTagger.kind,
        load=EmbeddedTagger.load,
    ),
    "transformers": _generative_backend(
        "transformers:PATH_OR_ID[?device=cuda&batch_size=64]", _local_or_hub, _transformers
    ),
    "openai": _generative_backend("openai:MODEL@URL[?prompt=taggenerator]", _endpoint, _openai),
    "keyphrase": Backend("keyphrase (a teacher)", _no_options, teacher=_keyphrase),
}


__all__ = [
    "BACKENDS",
    "TAGGER_FILE",
    "Backend",
    "Fitting",
    "generator_from_spec",
    "load_tagger",
    "load_tagger_folder",
    "parse_tagger",
    "router_spec",
    "save_tagger",
    "save_tagger_folder",
    "tagger_from_spec",
    "teacher_from_spec",
    "vocabulary_options",
]
