"""What the engine tests share: the example history split into files, and router comparisons."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tagrouter.records import HistoryRecord
from tagrouter.router import TagRouter
from tagrouter.tagging.embedded import EmbeddedTagger
from tagrouter.tagging.vocabulary import Vocabulary


def write_parts(folder: Path, records: list[HistoryRecord], parts: int, suffix: str = ".jsonl") -> list[Path]:
    """``records`` split into ``parts`` files (whole queries per file), as JSONL or Parquet."""
    ids = list(dict.fromkeys(r.query_id for r in records))
    paths = []
    for i in range(parts):
        chosen = set(ids[i::parts])
        mine = [r for r in records if r.query_id in chosen]
        path = folder / f"part-{i}{suffix}"
        if suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            # every field a column, null where unset (from_pylist takes its columns from the first row)
            pq.write_table(pa.Table.from_pylist([r.model_dump() for r in mine]), path)
        else:
            path.write_text("".join(json.dumps(r.model_dump(exclude_none=True)) + "\n" for r in mine))
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


def twin_tagger(tagger: EmbeddedTagger, seed: int = 0) -> EmbeddedTagger:
    """``tagger`` with a twin of every fine tag whose prototype differs from the original's by a few
    float32 units in the last place: every query that carries one of them is a near tie between the two,
    decided by the last bits of its similarities."""
    rng = np.random.default_rng(seed)
    vocabulary, fine = tagger.vocabulary, tagger._fine
    twins = [f"{vocabulary.tags[i]} twin" for i in fine]
    nudged = tagger.prototypes[fine] * (1 + rng.uniform(-3e-7, 3e-7, (len(fine), tagger.prototypes.shape[1])))
    nudged = (nudged / np.linalg.norm(nudged, axis=1, keepdims=True)).astype(np.float32)
    doubled = Vocabulary(
        tags=[*vocabulary.tags, *twins],
        counts=[*vocabulary.counts, *(vocabulary.counts[i] for i in fine)],
        aliases={**vocabulary.aliases},
        embeddings=np.concatenate([vocabulary.embeddings, vocabulary.embeddings[fine]]),
    )
    # an odd number of fine tags: the last one taken is one of a pair of twins, whose other is not
    return EmbeddedTagger(doubled, np.concatenate([tagger.prototypes, nudged]), fine=tagger.fine | 1)


def with_conversations(records: list[HistoryRecord]) -> list[HistoryRecord]:
    """``records`` with every other query made a second turn: the previous query's text as its earlier
    turn."""
    ids = list(dict.fromkeys(r.query_id for r in records))
    text = {r.query_id: r.query for r in records}
    earlier = {q: text[ids[i - 1]] for i, q in enumerate(ids) if i % 2}
    return [r.model_copy(update={"earlier": earlier.get(r.query_id)}) for r in records]
