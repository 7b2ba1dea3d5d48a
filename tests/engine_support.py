"""What the engine tests share: the example history split into files, and router comparisons."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tagrouter.records import HistoryRecord
from tagrouter.router import TagRouter


def write_parts(folder: Path, records: list[HistoryRecord], parts: int, suffix: str = ".jsonl") -> list[Path]:
    """``records`` split into ``parts`` files (whole queries per file), as JSONL or Parquet."""
    ids = list(dict.fromkeys(r.query_id for r in records))
    paths = []
    for i in range(parts):
        chosen = set(ids[i::parts])
        rows = [r.model_dump(exclude_none=True) for r in records if r.query_id in chosen]
        path = folder / f"part-{i}{suffix}"
        if suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), path)
        else:
            path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        paths.append(path)
    return paths


def assert_same_router(a: TagRouter, b: TagRouter, queries: list[str]) -> None:
    """Same table, vocabulary, prototypes and decisions."""
    assert a.table.equals(b.table)
    assert a.tagger.vocabulary.tags == b.tagger.vocabulary.tags
    assert a.tagger.vocabulary.counts == b.tagger.vocabulary.counts
    assert a.tagger.vocabulary.aliases == b.tagger.vocabulary.aliases
    np.testing.assert_array_equal(a.tagger.prototypes, b.tagger.prototypes)
    assert [d.to_dict() for d in a.route_batch(queries)] == [d.to_dict() for d in b.route_batch(queries)]
