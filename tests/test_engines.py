"""The fit's stages and the local engine: streaming reads, order-independent merges, chunked prototypes,
small pickles."""

from __future__ import annotations

import itertools
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from engine_support import assert_same_router, twin_tagger, with_conversations, write_parts

from tagrouter import records as readers
from tagrouter.embedding import default_embedder
from tagrouter.engines import HistorySource, run_pass
from tagrouter.engines.local import LocalEngine
from tagrouter.engines.stages import (
    Plan,
    Survey,
    TagCodes,
    count_batch,
    query_blocks,
    survey_batch,
    tag_block,
    tuning_sample,
)
from tagrouter.errors import DataError
from tagrouter.model import token_stats
from tagrouter.records import History, iter_history, read_history
from tagrouter.router import TagRouter
from tagrouter.scoring import TagTable
from tagrouter.tagging import embedded
from tagrouter.tagging.embedded import EmbeddedTagger
from tagrouter.tagging.teacher import KeyphraseTeacher


def queries_of(records) -> list[str]:
    return list({r.query_id: r.query for r in records}.values())


def counted_in_slices(tagger, history: History, size: int):
    """The survey, plan and per-slice counts of ``history`` cut in slices of ``size`` records (one part)."""
    survey, slices = Survey(), [history.sliced(i, i + size) for i in range(0, len(history), size)]
    for batch in slices:
        survey.add(0, *survey_batch(batch))
    codes = TagCodes()
    for block in query_blocks(len(survey.texts)):
        codes.add(tag_block(tagger, survey.texts[block]))
    plan = Plan(codes.finished(), list(survey.models), np.ones(len(survey.texts), dtype=bool))
    parts = [count_batch(plan, b, survey.positions[0][i], 0, i) for i, b in enumerate(slices)]
    return survey, plan, parts


def test_partial_counts_add_up_to_the_whole_in_any_order(example_router, example_records):
    history = History.from_records(example_records)
    survey, plan, parts = counted_in_slices(example_router.tagger, history, 40)
    assert len(parts) == 5
    tags = [example_router.tagger.tag([r.query])[0] for r in example_records]
    whole = TagTable.count(tags, history.model, history.outcome)
    first = None
    for order in itertools.islice(itertools.permutations(parts), 0, None, 17):
        merged = order[0]
        for part in order[1:]:
            merged = merged.merged(part)
        table = merged.table(plan)
        assert table.equals(whole)
        assert table.tags == tuple(plan.tags.tags) and table.records == len(history) == 192
        np.testing.assert_array_equal(table.counts, (first or table).counts)  # the same layout, exactly
        first = first or table
        assert merged.tokens(plan) == token_stats(history)
    sample = tuning_sample(plan, survey.texts, merged)  # every query sampled
    assert sample.texts == list(history.unique_queries().values())
    assert sample.tag_lists == [example_router.tagger.tag([q])[0] for q in sample.texts]
    assert (sample.codes >= 0).sum() == len(set(zip(history.query_id, history.model, strict=True)))


def test_tagger_pickles_without_its_embedding_table(example_router):
    tagger = example_router.tagger
    data = pickle.dumps(tagger)
    assert len(pickle.dumps(default_embedder())) < 200  # the 33 MB WordLlama table stays behind
    assert len(data) < 400_000, len(data)
    copy = pickle.loads(data)
    queries = ["Write a Python function that merges two sorted lists.", "Plan a trip to Rome", "hi"]
    assert copy.tag(queries) == tagger.tag(queries)
    np.testing.assert_array_equal(copy.prototypes, tagger.prototypes)


def test_chunked_prototypes_equal_one_chunk_exactly(example_records, monkeypatch):
    queries = queries_of(example_records)
    whole = EmbeddedTagger.fit(queries)
    monkeypatch.setattr(embedded, "EMBED_CHUNK", 5)  # 64 queries in 13 chunks
    chunked = EmbeddedTagger.fit(queries)
    assert chunked.vocabulary.tags == whole.vocabulary.tags
    assert chunked.vocabulary.aliases == whole.vocabulary.aliases
    np.testing.assert_array_equal(chunked.prototypes, whole.prototypes)  # fixed-point sums are exact


def test_a_query_gets_the_same_tags_in_any_batch(example_records):
    """Near ties (twin tags whose prototypes differ in the last float32 bits) are decided by the exact
    similarities, not by how BLAS summed this batch."""
    queries = [f"{a.query} {b.query}" for a in example_records[::3] for b in example_records[1::7]]
    tagger = twin_tagger(EmbeddedTagger.fit(queries))
    whole = tagger.tag(queries)
    assert [t for i in range(0, len(queries), 7) for t in tagger.tag(queries[i : i + 7])] == whole
    assert [tagger.tag([q])[0] for q in queries] == whole
    assert any(t.endswith(" twin") for tags in whole for t in tags)


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


def test_a_fit_reads_each_file_twice_and_tags_each_query_once(
    tmp_path, example_records, example_catalog, monkeypatch
):
    """The student, the table and the tuning come from two reads of every file; the teacher and the
    student tag each distinct query once (the tuning reuses the student's tags)."""
    paths = write_parts(tmp_path, example_records, 3)
    reads: Counter[Path] = Counter()
    raw_rows = readers._raw_rows

    def counted_rows(path):
        reads[path] += 1
        yield from raw_rows(path)

    monkeypatch.setattr(readers, "_raw_rows", counted_rows)
    tagged = {"student": Counter(), "teacher": Counter()}
    for name, cls in (("student", EmbeddedTagger), ("teacher", KeyphraseTeacher)):

        def counted_tag(self, texts, _tag=cls.tag, _seen=tagged[name]):
            _seen.update(texts)
            return _tag(self, texts)

        monkeypatch.setattr(cls, "tag", counted_tag)
    router = TagRouter.fit(paths, example_catalog)
    assert router.model.tuning is not None and router.model.tuning["queries"] == len(
        queries_of(example_records)
    )
    assert reads == dict.fromkeys(paths, 2)
    assert tagged["student"] == tagged["teacher"] == Counter(queries_of(example_records))


def test_local_update_from_files_equals_a_refit(tmp_path, example_records, example_catalog):
    first, second = write_parts(tmp_path, example_records, 2)
    router = TagRouter.fit(first, example_catalog).update([second])
    refit = TagRouter.fit(example_records, example_catalog, tagger=router.tagger)
    assert router.table.equals(refit.table)
    assert router.table.records == len(example_records)


def test_the_tuning_sample_keeps_earlier_turns_from_files(tmp_path, example_router, example_records):
    """The pass reads each query's earlier turns with it (JSONL and Parquet parts alike), and the tuning
    sample carries them in its query order; a history without them gives a sample without them."""
    conversations = with_conversations(example_records)
    earlier = {r.query_id: r.earlier for r in conversations}
    for suffix in (".jsonl", ".parquet"):
        if suffix == ".parquet":
            pytest.importorskip("pyarrow.parquet", reason="Parquet needs the 'parquet' extra")
        paths = write_parts(tmp_path, conversations, 3, suffix)
        done = run_pass(
            HistorySource.of(paths), engine=LocalEngine(), tagger=example_router.tagger, sample_queries=1000
        )
        text_of = {r.query: r.query_id for r in conversations}
        assert done.sample.earlier == [earlier[text_of[t]] for t in done.sample.texts]
        assert sum(e is not None for e in done.sample.earlier) == len(earlier) // 2
    plain = run_pass(
        HistorySource.of(example_records),
        engine=LocalEngine(),
        tagger=example_router.tagger,
        sample_queries=1000,
    )
    assert plain.sample.earlier is None
