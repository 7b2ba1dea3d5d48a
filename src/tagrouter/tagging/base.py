"""The ``Tagger`` protocol (batch-first) and the ``PersistentTagger`` protocol of taggers a router can save."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Tagger(Protocol):
    """Anything that labels a batch of queries with tags: ``tag(texts) -> one list of tags per text``."""

    def tag(self, texts: Sequence[str]) -> list[list[str]]: ...


@runtime_checkable
class PersistentTagger(Tagger, Protocol):
    """A tagger that a router can save with itself.

    ``save(folder)`` writes its files and returns a JSON-able config; ``kind`` names the entry of
    :data:`tagrouter.tagging.registry.BACKENDS` that loads it again from both.
    """

    kind: str

    def save(self, folder: Path) -> dict[str, Any]: ...
