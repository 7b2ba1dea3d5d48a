"""A disk cache in front of any tagger: each query text is tagged once per teacher, ever.

The cache is a JSONL file, one ``{"key": ..., "tags": [...]}`` line per query, where ``key`` is the
SHA-256 of the teacher's name and the query text. New lines are appended with one write per batch, so
an interrupted run keeps every finished batch; a torn last line is ignored on reading. A rerun over the
same queries makes no call to the teacher.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tagrouter.errors import DataError
from tagrouter.tagging.base import Tagger


def cache_key(namespace: str, text: str) -> str:
    """The cache key of ``text`` tagged by the teacher named ``namespace``."""
    return hashlib.sha256(f"{namespace}\0{text}".encode()).hexdigest()


@dataclass
class CachedTagger:
    """Tags with ``tagger`` only the texts that ``path`` holds no tags for, under the name ``namespace``
    (a teacher spec). ``calls`` and ``hits`` count texts sent to the tagger and texts found in the cache."""

    tagger: Tagger
    path: Path
    namespace: str
    calls: int = 0
    hits: int = 0
    skipped_lines: int = 0
    _tags: dict[str, list[str]] = field(default_factory=dict, init=False, repr=False)
    _torn: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if self.path.exists():
            try:
                text = self.path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise DataError(
                    f"cannot read the tag cache ({exc}); delete it to start afresh", path=self.path
                ) from None
            self._torn = bool(text) and not text.endswith("\n")  # an interrupted write
            for line in text.splitlines():
                try:
                    entry = json.loads(line)
                    self._tags[str(entry["key"])] = [str(t) for t in entry["tags"]]
                except (ValueError, KeyError, TypeError):
                    self.skipped_lines += 1

    def tag(self, texts: Sequence[str]) -> list[list[str]]:
        keys = [cache_key(self.namespace, t) for t in texts]
        todo = {k: t for k, t in zip(keys, texts, strict=True) if k not in self._tags}
        self.hits += len(texts) - len(todo)
        if todo:
            found = self.tagger.tag(list(todo.values()))
            self.calls += len(todo)
            self._append(dict(zip(todo, found, strict=True)))
        return [list(self._tags[k]) for k in keys]

    def _append(self, new: dict[str, list[str]]) -> None:
        lines = "".join(json.dumps({"key": k, "tags": v}, ensure_ascii=False) + "\n" for k, v in new.items())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write("\n" + lines if self._torn else lines)
            handle.flush()
            os.fsync(handle.fileno())
        self._torn = False
        self._tags.update(new)


__all__ = ["CachedTagger", "cache_key"]
