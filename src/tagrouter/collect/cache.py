"""The collector's disk cache: the sample, every answer and every verdict, so that an interrupted run
resumes without paying twice.

A cache folder holds ``sample.json`` (written atomically once) and two append-only JSONL files,
``answers.jsonl`` and ``verdicts.jsonl``: each line is flushed and fsynced as soon as its call is paid
for. A line cut short by a crash is ignored on reading (that one call is made again).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from tagrouter.errors import DataError
from tagrouter.fileio import atomic_write_json

SAMPLE_FILE = "sample.json"


def cache_key(*parts: Any) -> str:
    """A stable key of JSON-serialisable parts (a hash of their JSON)."""
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8")).hexdigest()[:32]


class JsonlStore:
    """An append-only JSONL file of ``{"key": ..., ...}`` entries, loaded into memory on opening."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the last line of an interrupted write
                if isinstance(entry, dict) and "key" in entry:
                    self.entries[entry["key"]] = entry

    def get(self, key: str) -> dict[str, Any] | None:
        return self.entries.get(key)

    def put(self, key: str, entry: dict[str, Any]) -> None:
        """Store ``entry`` under ``key``: appended, flushed and fsynced before this returns."""
        entry = {"key": key, **entry}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.entries[key] = entry


class CollectCache:
    """The cache folder of one collection (see the module docstring)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.answers = JsonlStore(self.folder / "answers.jsonl")
        self.verdicts = JsonlStore(self.folder / "verdicts.jsonl")

    def load_sample(self) -> list[dict[str, str]] | None:
        """The saved sample (``query_id``, ``query``, ``stratum`` per query), or None before the first run."""
        path = self.folder / SAMPLE_FILE
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))["queries"]
        except (ValueError, KeyError, TypeError):
            raise DataError(
                "the saved sample is damaged; remove the cache folder to start over", path=path
            ) from None

    def save_sample(self, queries: list[dict[str, str]], source: str, seed: int) -> None:
        atomic_write_json(self.folder / SAMPLE_FILE, {"source": source, "seed": seed, "queries": queries})
