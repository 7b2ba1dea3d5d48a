import json
import subprocess
import sys

import pytest
from conftest import fit_example
from typer.testing import CliRunner

from tagrouter.cli import app
from tagrouter.cli.demo import EXAMPLES
from tagrouter.router import TagRouter

runner = CliRunner()


@pytest.fixture(scope="module")
def router_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "router"
    result = fit_example(out, "--rule", "within", "--knob", "0.02")
    assert result.exit_code == 0, result.output
    assert "saved router" in result.output
    return out


def test_fit_saves_a_loadable_router(router_dir):
    router = TagRouter.load(router_dir)
    assert router.models == ["small-7b", "mid-70b", "large-api"]
    assert (router.decider.rule, router.decider.knob) == ("within", 0.02)


def test_route_one_query_and_a_file(router_dir, tmp_path):
    result = runner.invoke(app, ["route", str(router_dir), "Write a Python function to add two numbers."])
    assert result.exit_code == 0, result.output
    decision = json.loads(result.output)
    assert decision["model"] in {"small-7b", "mid-70b", "large-api"}
    assert decision["tags"] and set(decision["scores"]) == {"small-7b", "mid-70b", "large-api"}
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"query": "Hello!"}\n{"text": "Solve 2x = 4."}\n')
    lines = runner.invoke(app, ["route", str(router_dir), "--file", str(queries)]).output.splitlines()
    assert [json.loads(line)["query"] for line in lines] == ["Hello!", "Solve 2x = 4."]


def test_tag_command(router_dir):
    result = runner.invoke(app, ["tag", str(router_dir), "Write a poem about rain."])
    assert result.exit_code == 0
    assert (
        json.loads(result.output)["tags"]
        == TagRouter.load(router_dir).tagger.tag(["Write a poem about rain."])[0]
    )


def test_calibrate_updates_the_saved_router(router_dir, tmp_path):
    queries = tmp_path / "q.txt"
    queries.write_text(
        "\n".join(
            json.loads(line)["query"] for line in (EXAMPLES / "history.jsonl").read_text().splitlines()[::3]
        )
    )
    result = runner.invoke(
        app, ["calibrate", str(router_dir), "--queries", str(queries), "--strong-share", "0.5"]
    )
    assert result.exit_code == 0, result.output
    reported = json.loads(result.output)
    assert abs(reported["strong_share"] - 0.5) <= 1 / 34 + 1e-9
    assert TagRouter.load(router_dir).decider.knob == pytest.approx(reported["knob"])


def test_inspect_lists_tags_per_model(router_dir):
    result = runner.invoke(app, ["inspect", str(router_dir), "--min-support", "3"])
    assert result.exit_code == 0, result.output
    assert "small-7b" in result.output and "large-api" in result.output


def test_demo_falls_back_to_the_example_history(tmp_path):
    result = runner.invoke(app, ["demo", "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert "example history" in result.output and "cost saved" in result.output
    assert TagRouter.load(tmp_path / "d").models == ["small-7b", "mid-70b", "large-api"]


def test_bench_speed_json(tiny_data):
    result = runner.invoke(
        app, ["bench", "speed", "--data", str(tiny_data), "--pool", "cheap,dear", "--json"]
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert (figures["queries"], figures["models"]) == (3, 2)
    assert 0 < figures["p50_ms"] <= figures["p99_ms"] and figures["batch_qps"] > 0


def test_bad_input_is_one_clear_line_and_exit_code_2(tmp_path):
    bad = tmp_path / "h.jsonl"
    bad.write_text('{"query_id": "1", "query": "hi", "model": "m", "outcome": "great"}\n')
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tagrouter.cli",
            "fit",
            str(bad),
            "--catalog",
            str(EXAMPLES / "catalog.yaml"),
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert f"{bad}, row 1, field 'outcome'" in proc.stderr and "Traceback" not in proc.stderr
