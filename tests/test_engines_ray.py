"""The Ray engine on a local Ray instance (2 CPUs, started once for the module): the same router as the
local engine, updates equal to a refit, and bad rows reported with file and row."""

from __future__ import annotations

import pytest
from engine_support import assert_same_router, write_parts

from tagrouter.errors import DataError
from tagrouter.router import TagRouter

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
    refit = TagRouter.fit(example_records, example_catalog, tagger=on_ray.tagger)
    assert updated.table.equals(refit.table)
    assert updated.table.records == len(example_records)
    assert [d.model for d in updated.route_batch(queries_of(example_records))] == [
        d.model for d in refit.route_batch(queries_of(example_records))
    ]


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
