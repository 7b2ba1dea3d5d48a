"""The ``Tagger`` protocol (batch-first) and the registry that saves and loads taggers with a router."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from tagrouter.errors import ArtifactError


@runtime_checkable
class Tagger(Protocol):
    """Anything that labels a batch of queries with tags: ``tag(texts) -> one list of tags per text``."""

    def tag(self, texts: Sequence[str]) -> list[list[str]]: ...


@runtime_checkable
class PersistentTagger(Tagger, Protocol):
    """A tagger that a router can save with itself.

    ``kind`` names it in the registry; ``save(folder)`` writes its files and returns a JSON-able config;
    ``load(folder, config)`` rebuilds it from both.
    """

    kind: str

    def save(self, folder: Path) -> dict[str, Any]: ...

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any]) -> PersistentTagger: ...


_REGISTRY: dict[str, Callable[[Path, dict[str, Any]], Tagger]] = {}


def register_tagger(kind: str, loader: Callable[[Path, dict[str, Any]], Tagger]) -> None:
    """Make taggers of ``kind`` loadable from a saved router (backends call this at import)."""
    _REGISTRY[kind] = loader


def save_tagger(tagger: Tagger, folder: Path) -> dict[str, Any]:
    """Save ``tagger`` into ``folder``; returns the config to store in the router's manifest."""
    if not isinstance(tagger, PersistentTagger):
        raise ArtifactError(
            f"tagger {type(tagger).__name__} cannot be saved: it needs a 'kind', save() and load()"
        )
    folder.mkdir(parents=True, exist_ok=True)
    return {"kind": tagger.kind, "config": tagger.save(folder)}


def load_tagger(folder: Path, entry: dict[str, Any]) -> Tagger:
    """Rebuild a tagger saved by :func:`save_tagger`."""
    from tagrouter.tagging import backends  # noqa: F401  (registers the built-in kinds)

    kind = entry.get("kind")
    if kind not in _REGISTRY:
        raise ArtifactError(
            f"the saved router uses tagger kind {kind!r}, which this installation does not know "
            f"(known: {', '.join(sorted(_REGISTRY))}); install the extra that provides it"
        )
    return _REGISTRY[kind](folder, entry.get("config", {}))
