"""Saving and loading taggers: inside a router's folder (``save_tagger`` / ``load_tagger``) or on their own
(``save_tagger_folder`` / ``load_tagger_folder``, e.g. a distilled student).

A saved tagger is its own files plus an entry ``{"kind": ..., "config": ...}``; ``kind`` picks the loader
from :data:`LOADERS`. A new persistent tagger kind adds its loader there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tagrouter.errors import ArtifactError
from tagrouter.fileio import atomic_write_json
from tagrouter.tagging.backends.generative import GenerativeTagger
from tagrouter.tagging.base import PersistentTagger, Tagger
from tagrouter.tagging.embedded import EmbeddedTagger

#: The file that names the kind of a tagger saved on its own in a folder.
TAGGER_FILE = "tagger.json"

#: Tagger kind -> loader(folder, config). Both built-in kinds import no heavy dependency.
LOADERS: dict[str, Callable[[Path, dict[str, Any]], Tagger]] = {
    EmbeddedTagger.kind: EmbeddedTagger.load,
    GenerativeTagger.kind: GenerativeTagger.load,
}


def save_tagger(tagger: Tagger, folder: Path) -> dict[str, Any]:
    """Save ``tagger`` into ``folder``; returns the entry to store with it (kind and config)."""
    if not isinstance(tagger, PersistentTagger):
        raise ArtifactError(
            f"tagger {type(tagger).__name__} cannot be saved: it needs a 'kind', save() and load()"
        )
    folder.mkdir(parents=True, exist_ok=True)
    return {"kind": tagger.kind, "config": tagger.save(folder)}


def load_tagger(folder: Path, entry: dict[str, Any]) -> Tagger:
    """Rebuild a tagger saved by :func:`save_tagger` from its folder and entry."""
    kind = entry.get("kind")
    if kind not in LOADERS:
        raise ArtifactError(
            f"the saved tagger has kind {kind!r}, which this installation does not know "
            f"(known: {', '.join(sorted(LOADERS))}); upgrade tagrouter or refit with a known tagger"
        )
    return LOADERS[kind](folder, entry.get("config", {}))


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
