import json

import numpy as np
import pytest

from tagrouter.catalog import load_catalog
from tagrouter.errors import DataError
from tagrouter.records import History, HistoryRecord, ReadReport, iter_history, read_history, write_history

GOOD = {"query_id": "q1", "query": "What is 2+2?", "model": "m1", "outcome": "win"}


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_reads_jsonl_and_csv_alike(tmp_path):
    jsonl = write_jsonl(tmp_path / "h.jsonl", [GOOD, {**GOOD, "model": "m2", "outcome": "LOSS", "cost": 0.5}])
    csv = tmp_path / "h.csv"
    csv.write_text(
        "query_id,query,model,outcome,cost\nq1,What is 2+2?,m1,win,\nq1,What is 2+2?,m2,loss,0.5\n"
    )
    from_jsonl, from_csv = read_history(jsonl), read_history(csv)
    assert from_jsonl == from_csv
    assert [r.outcome for r in from_csv] == ["win", "loss"]
    assert from_csv[0].cost is None and from_csv[1].cost == 0.5
    assert [r.accepted for r in from_csv] == [True, False]


def test_parquet_round_trip(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="Parquet needs the 'parquet' extra")
    import pyarrow as pa

    pq.write_table(
        pa.Table.from_pylist([GOOD, {**GOOD, "model": "m2", "outcome": "tie"}]), tmp_path / "h.parquet"
    )
    assert [r.outcome for r in read_history(tmp_path / "h.parquet")] == ["win", "tie"]


@pytest.mark.parametrize(
    ("row", "field", "expected"),
    [
        ({**GOOD, "outcome": "draw"}, "outcome", "expected 'win', 'tie' or 'loss', got 'draw'"),
        ({k: v for k, v in GOOD.items() if k != "model"}, "model", "required field is missing"),
        ({**GOOD, "cost": -1}, "cost", "greater than or equal to 0"),
        ({**GOOD, "colour": "red"}, "colour", "unknown field"),
    ],
)
def test_bad_row_names_file_row_and_field(tmp_path, row, field, expected):
    path = write_jsonl(tmp_path / "h.jsonl", [GOOD, row])
    with pytest.raises(DataError) as info:
        read_history(path)
    assert (info.value.path, info.value.row, info.value.field) == (str(path), 2, field)
    assert expected in str(info.value) and str(path) in str(info.value)


def test_invalid_json_line(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps(GOOD) + "\n{not json\n")
    with pytest.raises(DataError, match=r"row 2: not valid JSON"):
        read_history(path)


def test_conflicting_query_text_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "h.jsonl", [GOOD, {**GOOD, "model": "m2", "query": "Other text"}])
    with pytest.raises(DataError, match="different query text than at"):
        read_history(path)


def test_skip_mode_reports_every_skipped_row(tmp_path):
    rows = [
        GOOD,
        {**GOOD, "model": "m2", "outcome": "meh"},
        {**GOOD, "model": "m3"},
        {**GOOD, "query_id": ""},
    ]
    report = ReadReport()
    records = read_history(write_jsonl(tmp_path / "h.jsonl", rows), on_error="skip", report=report)
    assert [r.model for r in records] == ["m1", "m3"]
    assert report.rows_read == 2 and len(report.skipped) == 2
    assert "row 2: outcome" in report.skipped[0] and "row 4: query_id" in report.skipped[1]
    assert "2 rows skipped" in report.summary()


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="unknown file type"):
        read_history(write_jsonl(tmp_path / "h.txt", [GOOD]))
    with pytest.raises(DataError, match="file not found"):
        read_history(tmp_path / "nope.jsonl")


def test_write_history_round_trip(tmp_path):
    records = [
        HistoryRecord(**GOOD),
        HistoryRecord(**{**GOOD, "model": "m2", "outcome": "tie", "input_tokens": 3}),
    ]
    write_history(tmp_path / "out.jsonl", records)
    assert read_history(tmp_path / "out.jsonl") == records


def test_catalog_errors_name_row_and_field(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "models:\n  - {name: a, input_usd_per_1m: 1, output_usd_per_1m: 2}\n"
        "  - {name: b, input_usd_per_1m: -1, output_usd_per_1m: 2}\n"
    )
    with pytest.raises(DataError) as info:
        load_catalog(path)
    assert info.value.row == 2 and info.value.field == "input_usd_per_1m"
    path.write_text(
        "models:\n  - {name: a, input_usd_per_1m: 1, output_usd_per_1m: 2}\n"
        "  - {name: a, input_usd_per_1m: 1, output_usd_per_1m: 2}\n"
    )
    with pytest.raises(DataError, match="repeated: a"):
        load_catalog(path)


def test_catalog_cost_and_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "models:\n  - name: a\n    input_usd_per_1m: 2\n    output_usd_per_1m: 10\n"
        "    endpoint: {base_url: 'http://127.0.0.1:9/v1', api_key_env: A_KEY}\n"
    )
    catalog = load_catalog(path)
    assert catalog["a"].cost(1000, 500) == pytest.approx((1000 * 2 + 500 * 10) / 1e6)
    catalog.save(tmp_path / "again.yaml")
    assert load_catalog(tmp_path / "again.yaml") == catalog


EARLIER = {**GOOD, "query_id": "q2", "query": "And in French?", "earlier": "Say hello.\n\nNow politely."}


def test_earlier_turns_round_trip_through_every_reader(tmp_path):
    """A record's earlier turns are read back by JSONL, CSV and Parquet alike (an empty CSV cell and a
    Parquet null are a first turn), kept by the columnar batches, and absent from old files."""
    records = [HistoryRecord(**GOOD), HistoryRecord(**EARLIER), HistoryRecord(**{**EARLIER, "model": "m2"})]
    write_history(tmp_path / "h.jsonl", records)
    assert read_history(tmp_path / "h.jsonl") == records
    csv = tmp_path / "h.csv"
    csv.write_text(
        "query_id,query,model,outcome,earlier\nq1,What is 2+2?,m1,win,\n"
        '"q2","And in French?",m1,win,"Say hello.\n\nNow politely."\nq2,And in French?,m2,win,"Say hello.\n\n'
        'Now politely."\n'
    )
    assert read_history(csv) == records
    pq = pytest.importorskip("pyarrow.parquet", reason="Parquet needs the 'parquet' extra")
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist([r.model_dump() for r in records]), tmp_path / "h.parquet")
    assert read_history(tmp_path / "h.parquet") == records
    (batch,) = iter_history(tmp_path / "h.parquet")
    assert batch.earlier == [None, EARLIER["earlier"], EARLIER["earlier"]]
    assert batch.unique_earlier() == {"q2": EARLIER["earlier"]}
    assert batch.taken(np.array([True, False, True])).earlier == [None, EARLIER["earlier"]]
    assert History.concatenated([batch.sliced(0, 1), batch.sliced(1, 3)]).earlier == batch.earlier
    (old,) = iter_history(write_jsonl(tmp_path / "old.jsonl", [GOOD]))
    assert old.earlier is None and old.unique_earlier() == {}


def test_one_query_id_has_one_set_of_earlier_turns(tmp_path):
    path = write_jsonl(tmp_path / "h.jsonl", [EARLIER, {**EARLIER, "model": "m2", "earlier": "Other turns."}])
    with pytest.raises(DataError, match="row 2.*'earlier'.*different earlier turns than at") as raised:
        read_history(path)
    assert raised.value.field == "earlier"
    with pytest.raises(DataError, match="earlier"):
        read_history(write_jsonl(tmp_path / "e.jsonl", [{**EARLIER, "earlier": ""}]))
