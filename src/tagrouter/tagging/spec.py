"""Specs: the one grammar that names a tagger, a teacher or a judge on the command line and in saved routers.

A spec is ``KIND[:TARGET][?name=value&...]``: ``KIND`` names an entry of a table (the taggers of
:data:`tagrouter.tagging.registry.BACKENDS`, the judges of :func:`tagrouter.collect.judging.parse_judge`),
``TARGET`` says what it runs (a folder, a model id, or ``MODEL@URL`` for an OpenAI-compatible endpoint) and
the options are URL-query pairs. The tagger forms are listed in ``docs/taggers.md``; their option names:

- of the generative backends (``transformers``, ``openai``): see their classes' fields;
- as a router's tagger: :data:`TAGGER_OPTIONS` (how tags are mapped to a vocabulary, not the backend itself).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from tagrouter.errors import TagRouterError

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
    """A spec that cannot be understood; the message shows the accepted forms."""


@dataclass(frozen=True)
class Spec:
    """A parsed spec: ``kind``, ``target`` (path, model id, ``MODEL@URL`` or folder) and ``options``."""

    kind: str
    target: str = ""
    options: dict[str, str] = field(default_factory=dict)

    def backend_spec(self) -> str:
        """The spec of a tagger's backend alone (no vocabulary options): what a saved router stores."""
        return self._text({k: v for k, v in self.options.items() if k not in TAGGER_OPTIONS})

    def identity(self) -> str:
        """What determines a tagger's answers (no vocabulary or transport options, options sorted): the
        key under which a teacher's tags are cached."""
        skipped = TAGGER_OPTIONS.keys() | TRANSPORT_OPTIONS
        return self._text(dict(sorted((k, v) for k, v in self.options.items() if k not in skipped)))

    def option(self, name: str, kind: type, default: Any = None) -> Any:
        """Option ``name`` as a ``kind`` (``default`` when absent), or a :class:`SpecError` naming it."""
        value = self.options.get(name)
        if value is None:
            return default
        try:
            return kind(value)
        except ValueError:
            raise SpecError(
                f"spec {self.backend_spec()!r}: option {name}={value!r} must be a {kind.__name__}"
            ) from None

    def typed_options(self, known: Mapping[str, type]) -> dict[str, Any]:
        """Every option, converted to its type in ``known``; an option not in ``known`` is a
        :class:`SpecError` listing the known ones."""
        unknown = [name for name in self.options if name not in known]
        if unknown:
            raise SpecError(
                f"spec {self.backend_spec()!r}: unknown option {unknown[0]!r} for {self.kind}; "
                f"known: {', '.join(known)}"
            )
        return {name: self.option(name, known[name]) for name in self.options}

    def endpoint(self) -> tuple[str, str]:
        """``(model, base URL)`` of a ``MODEL@URL`` target (the URL ``http://`` or ``https://``)."""
        model, at, url = self.target.rpartition("@")
        if not at or not model or not url:
            raise SpecError(f"spec {self.backend_spec()!r}: expected {self.kind}:MODEL@URL")
        if not url.startswith(("http://", "https://")):
            raise SpecError(
                f"spec {self.backend_spec()!r}: the URL {url!r} must start with http:// or https://"
            )
        return model, url

    def _text(self, options: dict[str, str]) -> str:
        query = f"?{urlencode(options)}" if options else ""
        return f"{self.kind}:{self.target}{query}" if self.target else f"{self.kind}{query}"


def parse_spec(
    text: str, kinds: Collection[str], *, what: str, forms: str, default: str | None = None
) -> Spec:
    """Split ``KIND[:TARGET][?OPTIONS]``, ``KIND`` one of ``kinds``. With a ``default`` kind, a spec whose
    head names no kind is all target (``MODEL@URL`` for ``openai:MODEL@URL``); without one, it is a
    :class:`SpecError` that shows ``forms``. Malformed options are a :class:`SpecError` too."""
    stripped = text.strip()
    head, _, query = stripped.partition("?")
    kind, _, target = head.partition(":")
    kind = kind.strip().lower()
    if kind not in kinds:
        if default is None:
            raise SpecError(f"unknown {what} {text!r}; {forms}")
        kind, target = default, head
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise SpecError(f"{what} spec {text!r}: options must look like ?name=value&name=value") from None
    return Spec(kind, target.strip(), options)


def resolved_path(target: str) -> str:
    """``target`` made absolute when it names an existing local path (a saved router then loads from any
    folder), else as it is (a Hugging Face id, say)."""
    path = Path(target).expanduser()
    return str(path.resolve()) if target and path.exists() else target


__all__ = ["TAGGER_OPTIONS", "TRANSPORT_OPTIONS", "Spec", "SpecError", "parse_spec", "resolved_path"]
