"""Text-generation backends from a tagger spec: ``transformers:`` or ``openai:`` (nothing is loaded yet)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from tagrouter.tagging.spec import (
    SPEC_FORMS,
    TAGGER_OPTIONS,
    SpecError,
    TaggerSpec,
    convert_option,
    parse_spec,
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
    raise SpecError(f"tagger {parsed.backend!r} is not a generative backend; {SPEC_FORMS}")


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
        kwargs[name] = convert_option(
            parsed, name, value, {"int": int, "float": float}.get(settable[name], str)
        )
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise SpecError(f"tagger spec {parsed.backend_spec()!r}: {exc}") from None
