"""Taggers and teachers from a spec string (``embedded``, ``embedded:DIR``, ``transformers:…``,
``openai:…``, ``keyphrase``): what ``--tagger`` and ``--teacher`` accept."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tagrouter.embedding import Embedder
from tagrouter.tagging.backends.generators import generator_from_spec
from tagrouter.tagging.base import Tagger
from tagrouter.tagging.saving import load_tagger_folder
from tagrouter.tagging.spec import TAGGER_OPTIONS, SpecError, TaggerSpec, convert_option, parse_spec
from tagrouter.tagging.vocabulary import Vocabulary

Progress = Callable[[str, int, int], None]


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
    return default if value is None else convert_option(parsed, name, value, TAGGER_OPTIONS[name])


def _load_vocabulary(folder: Path) -> Vocabulary:
    if not (folder / "vocabulary.json").is_file():
        raise SpecError(f"{folder}: no vocabulary.json there; write one with 'tagrouter vocab build'")
    vocabulary = Vocabulary.load(folder)
    if vocabulary.embeddings is None:
        raise SpecError(f"{folder}: the vocabulary has no tag_embeddings.npy, which alignment needs")
    return vocabulary
