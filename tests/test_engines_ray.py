"""The Ray engine on a local Ray instance (2 CPUs, started once for the module): the same router as the
local engine, updates equal to a refit, and bad rows reported with file and row."""

from __future__ import annotations

import numpy as np
import pytest
from engine_support import assert_same_router, twin_tagger, with_conversations, write_parts

from tagrouter import records as readers
from tagrouter.catalog import Catalog
from tagrouter.engines import stages
from tagrouter.errors import DataError
from tagrouter.records import HistoryRecord
from tagrouter.router import TagRouter
from tagrouter.tagging.embedded import EmbeddedTagger

ray = pytest.importorskip("ray", reason="the Ray engine tests need Ray Data: pip install 'tagrouter[ray]'")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def queries_of(records) -> list[str]:
    return list({r.query_id: r.query for r in records}.values())


def test_ray_fit_equals_the_local_fit(example_records, example_catalog, example_router):
    on_ray = TagRouter.fit(example_records, example_catalog, engine="ray")
    assert_same_router(on_ray, example_router, queries_of(example_records))


def test_ray_fit_and_update_from_files_equal_a_refit(tmp_path, example_records, example_catalog):
    pytest.importorskip("pyarrow.parquet", reason="Parquet needs the 'parquet' extra")
    paths = write_parts(tmp_path, example_records, 4, ".parquet")
    local = TagRouter.fit(paths[:2], example_catalog)
    on_ray = TagRouter.fit(paths[:2], example_catalog, engine="ray")
    assert_same_router(on_ray, local, queries_of(example_records))
    updated = on_ray.update([str(tmp_path / "part-[23].parquet")], engine="ray")
    # a refit with the first fit's settings (an update keeps the scorer, its residual and the policy)
    refit = TagRouter.fit(
        example_records,
        example_catalog,
        tagger=on_ray.tagger,
        scorer=on_ray.model.scorer,
        decider=on_ray.decider,
    )
    first = on_ray.model
    refit = TagRouter(refit.model.with_scorer(first.scorer, first.tuning, first.residual), on_ray.decider)
    assert updated.table.equals(refit.table)
    assert updated.table.records == len(example_records)
    assert [d.model for d in updated.route_batch(queries_of(example_records))] == [
        d.model for d in refit.route_batch(queries_of(example_records))
    ]


def test_a_ray_fit_reads_no_file_on_the_driver(tmp_path, example_records, example_catalog, monkeypatch):
    """The workers read the files (twice: distinct queries, then counts); the driver, tuning included,
    never falls back to a local read."""
    paths = write_parts(tmp_path, example_records, 3)

    def no_local_read(path):
        raise AssertionError(f"the driver read {path}")

    monkeypatch.setattr(readers, "_raw_rows", no_local_read)
    on_ray = TagRouter.fit(paths, example_catalog, engine="ray")
    assert on_ray.model.tuning is not None and on_ray.table.records == len(example_records)


def test_ray_reports_a_bad_row_with_its_file_and_row(tmp_path, example_records, example_catalog):
    paths = write_parts(tmp_path, example_records, 2)
    lines = paths[1].read_text().splitlines()
    lines[2] = lines[2].replace('"model": "', '"model": 7, "x": "')
    paths[1].write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        TagRouter.fit(paths, example_catalog, engine="ray")
    assert (info.value.path, info.value.row) == (str(paths[1]), 3)


def test_fit_and_update_commands_on_ray(tmp_path, example_records, example_catalog):
    from typer.testing import CliRunner

    from tagrouter.cli import app
    from tagrouter.cli.demo import EXAMPLES

    write_parts(tmp_path, example_records, 3)
    catalog = str(EXAMPLES / "catalog.yaml")
    fitted = CliRunner().invoke(
        app,
        [
            "fit",
            str(tmp_path / "part-[01].jsonl"),
            "--catalog",
            catalog,
            "--out",
            str(tmp_path / "r"),
            "--engine",
            "ray",
        ],
    )
    assert fitted.exit_code == 0, fitted.output
    updated = CliRunner().invoke(
        app, ["update", str(tmp_path / "r"), str(tmp_path / "part-2.jsonl"), "--engine", "ray"]
    )
    assert updated.exit_code == 0, updated.output
    router = TagRouter.load(tmp_path / "r")
    refit = TagRouter.fit(example_records, example_catalog, tagger=router.tagger)
    assert router.table.equals(refit.table)
    added = len((tmp_path / "part-2.jsonl").read_text().splitlines())
    assert f"learned {added} records" in updated.output


def near_tie_records(example_records, queries: int = 700, seed: int = 0) -> list[HistoryRecord]:
    """``queries`` queries recombined from the example history's words (so that many share words and
    their tags are near ties), each judged for four models."""
    rng = np.random.default_rng(seed)
    words = sorted({w for r in example_records for w in r.query.split()})
    models = ["cheap", "mid", "dear", "context"]
    records = []
    for i in range(queries):
        text = " ".join(rng.choice(words, int(rng.integers(4, 14))))
        for model in models:
            outcome = ("win", "tie", "loss")[int(rng.integers(3))]
            records.append(
                HistoryRecord(
                    query_id=f"q{i}",
                    query=text,
                    model=model,
                    outcome=outcome,
                    output_tokens=int(rng.integers(900)),
                )
            )
    return records


def test_ray_and_local_give_the_same_router_bit_for_bit(tmp_path, example_records, monkeypatch):
    """Several files (parts), several blocks of distinct queries, and a tagger whose every query is a near
    tie (:func:`twin_tagger`): the same table (tags, models and counts in the same order), the same scores
    to the last bit, the same tuning and knob."""
    monkeypatch.setattr(stages, "QUERY_BLOCK", 128)  # 700 distinct queries in 6 blocks
    records = near_tie_records(example_records)
    queries = list(dict.fromkeys(r.query for r in records))
    tagger = twin_tagger(EmbeddedTagger.fit(queries))
    paths = write_parts(tmp_path, records, 5)
    prices = [("cheap", 0.1), ("mid", 1.0), ("dear", 10.0)]
    catalog = Catalog.model_validate(
        {"models": [{"name": m, "input_usd_per_1m": p, "output_usd_per_1m": 2 * p} for m, p in prices]}
    )
    local = TagRouter.fit(paths, catalog, tagger=tagger)
    on_ray = TagRouter.fit(paths, catalog, tagger=tagger, engine="ray")
    assert (local.table.tags, local.table.models) == (on_ray.table.tags, on_ray.table.models)
    np.testing.assert_array_equal(local.table.counts, on_ray.table.counts)
    np.testing.assert_array_equal(local.table.model_counts, on_ray.table.model_counts)
    assert np.array_equal(local.score_batch(queries)[1], on_ray.score_batch(queries)[1])
    assert {**local.model.tuning, "seconds": 0} == {**on_ray.model.tuning, "seconds": 0}
    assert local.decider == on_ray.decider
    assert dict(local.model.output_tokens) == dict(on_ray.model.output_tokens)


def test_ray_reads_earlier_turns_and_chooses_as_the_local_fit(tmp_path, example_records, example_catalog):
    """A history of conversations in Parquet parts: the Ray fit reads each query's earlier turns, so its
    tuning sample and conversation choice are the local fit's."""
    pytest.importorskip("pyarrow.parquet", reason="Parquet needs the 'parquet' extra")
    paths = write_parts(tmp_path, with_conversations(example_records), 3, ".parquet")
    local = TagRouter.fit(paths, example_catalog)
    on_ray = TagRouter.fit(paths, example_catalog, engine="ray")
    assert local.model.tuning["conversation"] is not None
    assert on_ray.model.conversation == local.model.conversation
    assert on_ray.model.tuning["conversation"] == local.model.tuning["conversation"]
