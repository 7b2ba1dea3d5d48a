"""The fit's stages and the local engine: streaming reads, order-independent merges, chunked prototypes,
small pickles."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
from engine_support import assert_same_router, write_parts

from tagrouter.embedding import default_embedder
from tagrouter.engines.stages import partial_table
from tagrouter.errors import DataError
from tagrouter.records import History, iter_history, read_history
from tagrouter.router import TagRouter
from tagrouter.scoring import TagTable
from tagrouter.tagging import embedded
from tagrouter.tagging.embedded import EmbeddedTagger


def queries_of(records) -> list[str]:
    return list({r.query_id: r.query for r in records}.values())


def test_partial_tables_merge_to_the_whole_in_any_order(example_router, example_records):
    history = History.from_records(example_records)
    whole = partial_table(example_router.tagger, history)
    parts = [
        partial_table(example_router.tagger, history.sliced(i, i + 40)) for i in range(0, len(history), 40)
    ]
    assert len(parts) == 5
    for order in itertools.islice(itertools.permutations(parts), 0, None, 17):
        merged = order[0]
        for part in order[1:]:
            merged = merged.merged(part)
        assert merged.table.equals(whole.table)
        assert merged.table.records == len(history) == 192
        assert dict(merged.tokens) == dict(whole.tokens)
    tags = [example_router.tagger.tag([r.query])[0] for r in example_records]
    assert whole.table.equals(TagTable.count(tags, history.model, history.outcome))


def test_tagger_pickles_without_its_embedding_table(example_router):
    tagger = example_router.tagger
    data = pickle.dumps(tagger)
    assert len(pickle.dumps(default_embedder())) < 200  # the 33 MB WordLlama table stays behind
    assert len(data) < 400_000, len(data)
    copy = pickle.loads(data)
    queries = ["Write a Python function that merges two sorted lists.", "Plan a trip to Rome", "hi"]
    assert copy.tag(queries) == tagger.tag(queries)
    np.testing.assert_array_equal(copy.prototypes, tagger.prototypes)


def test_chunked_prototypes_equal_one_chunk(example_records, monkeypatch):
    queries = queries_of(example_records)
    whole = EmbeddedTagger.fit(queries)
    monkeypatch.setattr(embedded, "EMBED_CHUNK", 5)  # 64 queries in 13 chunks
    chunked = EmbeddedTagger.fit(queries)
    assert chunked.vocabulary.tags == whole.vocabulary.tags
    assert chunked.vocabulary.aliases == whole.vocabulary.aliases
    np.testing.assert_allclose(chunked.prototypes, whole.prototypes, rtol=0, atol=1e-6)


def test_align_above_cutoff_one_never_embeds_unknown_tags(example_router):
    vocabulary = example_router.tagger.vocabulary

    class Refusing:
        name = "refusing"

        def embed(self, texts):
            raise AssertionError(f"embedded {len(texts)} tags")

    known = vocabulary.tags[0]
    assert vocabulary.align([[known, "zzz unknown tag"]], Refusing(), cutoff=1.01) == [[known]]


def test_iter_history_streams_batches_of_files_and_patterns(tmp_path, example_records):
    pytest.importorskip("pyarrow.parquet", reason="Parquet needs the 'parquet' extra")
    write_parts(tmp_path, example_records, 3, ".parquet")
    batches = list(iter_history(str(tmp_path / "part-*.parquet"), batch_rows=16))
    assert [len(b) for b in batches] == [16] * 12
    streamed = [
        (q, m, int(o)) for b in batches for q, m, o in zip(b.query_id, b.model, b.outcome, strict=True)
    ]
    read = read_history(sorted(tmp_path.glob("part-*.parquet")))
    assert streamed == [(r.query_id, r.model, ("win", "tie", "loss").index(r.outcome)) for r in read]
    with pytest.raises(DataError, match="no file matches"):
        list(iter_history(str(tmp_path / "nothing-*.parquet")))


def test_iter_history_errors_name_file_row_and_field(tmp_path, example_records):
    paths = write_parts(tmp_path, example_records, 2)
    lines = paths[1].read_text().splitlines()
    lines[6] = lines[6].replace('"outcome": "', '"outcome": "draw')
    paths[1].write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        list(iter_history(str(tmp_path / "*.jsonl"), batch_rows=4))
    assert (info.value.path, info.value.row, info.value.field) == (str(paths[1]), 7, "outcome")
    kept = sum(len(b) for b in iter_history(paths, on_error="skip"))
    assert kept == len(example_records) - 1


def test_local_fit_from_files_equals_fit_on_records(tmp_path, example_records, example_catalog):
    paths = write_parts(tmp_path, example_records, 3)
    from_files = TagRouter.fit(str(tmp_path / "part-*.jsonl"), example_catalog)
    assert from_files.model.tuning is not None  # the self-tuning runs on a sample read from the files
    in_memory = TagRouter.fit(read_history(paths), example_catalog)  # the same records in the same order
    assert_same_router(from_files, in_memory, queries_of(example_records))
    assert from_files.decider == in_memory.decider
    assert {**from_files.model.tuning, "seconds": 0} == {**in_memory.model.tuning, "seconds": 0}


def test_local_update_from_files_equals_a_refit(tmp_path, example_records, example_catalog):
    first, second = write_parts(tmp_path, example_records, 2)
    router = TagRouter.fit(first, example_catalog).update([second])
    refit = TagRouter.fit(example_records, example_catalog, tagger=router.tagger)
    assert router.table.equals(refit.table)
    assert router.table.records == len(example_records)
