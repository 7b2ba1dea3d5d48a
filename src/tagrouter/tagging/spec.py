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

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from tagrouter.errors import TagRouterError

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
        raise SpecError(f"unknown tagger {spec!r}; {SPEC_FORMS}")
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise SpecError(f"tagger spec {spec!r}: options must look like ?name=value&name=value") from None
    target = target.strip()
    if backend == "transformers" and target and Path(target).expanduser().exists():
        target = str(Path(target).expanduser().resolve())  # a saved router then loads from any folder
    return TaggerSpec(backend, target, options)


SPEC_FORMS = (
    "expected 'embedded', 'embedded:DIR', 'transformers:PATH_OR_ID[?device=cuda&batch_size=64]', "
    "'openai:MODEL@URL[?prompt=taggenerator]' or (as a teacher) 'keyphrase'"
)


def convert_option(parsed: TaggerSpec, name: str, value: str, kind: type) -> Any:
    """Option ``name`` of ``parsed`` as a ``kind``, or a :class:`SpecError` naming it."""
    try:
        return kind(value)
    except ValueError:
        raise SpecError(
            f"tagger spec {parsed.backend_spec()!r}: option {name}={value!r} must be a {kind.__name__}"
        ) from None


__all__ = ["SpecError", "TaggerSpec", "convert_option", "parse_spec"]
