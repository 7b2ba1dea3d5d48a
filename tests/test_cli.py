import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import fit_example
from typer.testing import CliRunner

from tagrouter.cli import app
from tagrouter.cli.demo import EXAMPLES
from tagrouter.deciding import Decider
from tagrouter.records import read_history
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
    """The printed decisions are the saved router's own (model, tags, scores), one per query and in order,
    on a router whose knob splits these queries between models. Bug caught: a command that routes with
    another policy than the saved one (e.g. the default rule at knob 0) or prints the decisions of a
    reordered batch."""
    texts = ["Hello!", "Solve 2x = 4.", "Write a SQL query that joins two tables.", "Fix: me and him goes."]
    texts += ["Tell me a joke about cats.", "Prove that 7 is prime.", "Write a haiku about rain."]
    split = TagRouter.load(router_dir).calibrated(texts, strong_share=0.5)
    split.save(tmp_path / "split")
    routed = split.route_batch(texts)
    knob_zero = split.with_decider(Decider("utility", 0.0)).route_batch(texts)
    assert len({d.model for d in routed}) > 1 and [d.model for d in routed] != [d.model for d in knob_zero]
    result = runner.invoke(app, ["route", str(tmp_path / "split"), texts[2]])
    assert result.exit_code == 0, result.output
    decision = json.loads(result.output)
    assert (decision["model"], decision["tags"]) == (routed[2].model, routed[2].tags)
    assert decision["scores"] == pytest.approx(routed[2].scores)
    queries = tmp_path / "q.jsonl"
    queries.write_text(
        f'{{"query": "{texts[0]}"}}\n{{"text": "{texts[1]}"}}\n'
        + "".join(json.dumps({"query": t}) + "\n" for t in texts[2:])
    )
    lines = runner.invoke(app, ["route", str(tmp_path / "split"), "--file", str(queries)]).output.splitlines()
    printed = [json.loads(line) for line in lines]
    assert [d["query"] for d in printed] == texts
    assert [d["model"] for d in printed] == [d.model for d in routed]


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
    reported = json.loads(result.stdout)
    assert abs(reported["strong_share"] - 0.5) <= 1 / 64 + 1e-9
    assert TagRouter.load(router_dir).decider.knob == pytest.approx(reported["knob"])
    version = (router_dir / "CURRENT").read_text().strip()
    assert result.stderr.startswith(f"rewrote {router_dir} (version {version}): rule within, knob ")


def test_fit_prints_the_menu_and_calibrate_picks_from_it(tmp_path):
    out = tmp_path / "router"
    fitted = fit_example(out)
    assert fitted.exit_code == 0, fitted.output
    assert "'tagrouter calibrate DIR --max-accept-drop D' picks one" in fitted.output
    assert "embedding residual " in fitted.output and "with the tags alone" in fitted.output
    menu = TagRouter.load(out).model.tuning["menu"]
    assert 5 <= len(menu) <= 7 and fitted.output.count("  drop <= ") == len(menu)
    shown = runner.invoke(app, ["inspect", str(out), "--min-support", "3"])
    assert shown.output.count("  drop <= ") == len(menu)
    result = runner.invoke(app, ["calibrate", str(out), "--max-accept-drop", "0.015"])
    assert result.exit_code == 0, result.output
    picked = [m for m in menu if m["max_accept_drop"] == 0.01][0]  # the largest drop within 0.015
    assert json.loads(result.stdout)["knob"] == picked["knob"]
    router = TagRouter.load(out)
    assert (router.decider.rule, router.decider.knob) == ("utility", picked["knob"])


def test_calibrate_needs_one_target(router_dir, monkeypatch, capsys):
    code, err = run_main(
        monkeypatch, capsys, "calibrate", router_dir, "--max-accept-drop", "0.01", "--mean-cost", "1"
    )
    assert code == 2 and "exactly one of" in err


def test_inspect_lists_tags_per_model(router_dir):
    """Each model's row shows its overall accept rate counted from the history file, and its strongest
    and weakest tags in order (strengths compared with the other models: positive on the strong side,
    negative on the weak side; their values are checked in test_tag_strengths_compare_the_models_...),
    with the judged count of the tag counted here from the table. Bugs caught: ties counted as losses,
    or the strongest and weakest sides swapped."""
    import re

    from tagrouter.records import read_history

    result = runner.invoke(app, ["inspect", str(router_dir), "--min-support", "3"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    router = TagRouter.load(router_dir)
    history = read_history(EXAMPLES / "history.jsonl")
    rows = {}
    for line in result.output.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 4 and cells[0] in router.models:
            current = rows.setdefault(cells[0], {"overall": cells[1], "strongest": [], "weakest": []})
        if len(cells) == 4 and rows and cells[2]:
            current["strongest"].append(cells[2])
            current["weakest"].append(cells[3])
    assert list(rows) == router.models
    counts = router.table.counts
    for model, row in rows.items():
        outcomes = [r.outcome for r in history if r.model == model]
        assert float(row["overall"]) == pytest.approx(
            sum(o != "loss" for o in outcomes) / len(outcomes), abs=5e-4
        )
        m = router.table.model_index[model]
        judged = counts[:, m].sum(axis=1)
        for side in ("strongest", "weakest"):
            deltas = []
            for cell in row[side]:
                if cell == "none beyond noise":
                    continue
                tag, delta, n = re.fullmatch(r"(.+) \(([-+][0-9.]+), n=(\d+)\)", cell).groups()
                i = router.table.tag_index[tag]
                assert int(n) == judged[i] >= 3
                assert (float(delta) > 0) == (side == "strongest")
                deltas.append(float(delta))
            assert deltas == sorted(deltas, reverse=side == "strongest")


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


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Run the ``tagrouter`` entry point (its error boundary included) in-process."""
    from tagrouter.cli import main

    monkeypatch.setattr(sys, "argv", ["tagrouter", *map(str, args)])
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--rule", "bogus"], "'bogus' is not one of 'gap', 'within', 'utility'"),
        (["--scorer", "bogus"], "'bogus' is not one of 'smoothed', 'paper'"),
        (["--rule", "gap"], "the 'gap' rule needs exactly two models, the catalogue has 3"),
        (["--rule", "within", "--knob", "-1"], "the 'within' rule takes a knob θ ≥ 0"),
    ],
)
def test_bad_fit_options_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys, args, expected):
    history, catalog = EXAMPLES / "history.jsonl", EXAMPLES / "catalog.yaml"
    code, err = run_main(
        monkeypatch, capsys, "fit", history, "--catalog", catalog, "--out", tmp_path / "r", *args
    )
    assert code == 2 and expected in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # nothing saved that would fail later


def test_bad_route_serve_and_calibrate_input_is_one_line_and_exit_2(
    router_dir, tmp_path, monkeypatch, capsys
):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    cases = [
        (["calibrate", router_dir, "--queries", empty, "--mean-cost", "0.001"], "no queries in the file"),
        (["route", router_dir, "   "], "query 1 is empty"),
        (["route", tmp_path / "nowhere", "hi"], "no such router folder"),
        (["serve", router_dir, "--log-level", "foo"], "'foo' is not one of"),
    ]
    for args, expected in cases:
        code, err = run_main(monkeypatch, capsys, *args)
        assert code == 2 and expected in err and "Traceback" not in err, (args, err)


def test_data_commands_need_data_named_explicitly(tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TAGROUTER_DATA", raising=False)
    cases = [
        (["data", "alpacaeval", "--out", tmp_path / "a"], "pass --data DIR (the alpaca_eval folder)"),
        (["data", "mt_bench", "--out", tmp_path / "m"], "pass --data DIR (the routellm folder)"),
        (["bench", "suite", "--out", tmp_path / "s"], "pass --data DIR (the folder holding the data sets)"),
        (["data", "judge-labels", "mtbench", "--out", tmp_path / "l"], "(the routellm folder)"),
    ]
    for args, expected in cases:
        code, err = run_main(monkeypatch, capsys, *args)
        assert code == 2 and expected in err and "TAGROUTER_DATA" in err and len(err.splitlines()) == 1
    # the variable is an explicit opt-in: it names the folder that holds alpaca_eval/
    monkeypatch.setenv("TAGROUTER_DATA", str(tiny_data.parent))
    result = runner.invoke(app, ["data", "alpacaeval", "--pool", "cheap,dear", "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert len(read_history(tmp_path / "a" / "history.jsonl")) == 6


def test_benchmarks_without_the_bench_extra_say_how_to_install_it(tiny_data, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    code, err = run_main(monkeypatch, capsys, "bench", "speed", "--data", tiny_data, "--pool", "cheap,dear")
    assert code == 2
    assert err == "error: the benchmarks need matplotlib: pip install 'tagrouter[bench]'\n"


def test_tag_strengths_compare_the_models_and_stay_quiet_on_noise():
    from tagrouter.cli.inspection import tag_strengths
    from tagrouter.scoring import TagTable

    # "proof" is hard for both models (no one's strength); "poem" is where "a" beats "b"; "chat" is noise
    rows = [("proof", "a", 0.3), ("proof", "b", 0.3), ("poem", "a", 0.95), ("poem", "b", 0.5)]
    rows += [("chat", "a", 0.7), ("chat", "b", 0.72), ("misc", "a", 0.8), ("misc", "b", 0.8)]
    tags, models, outcomes = [], [], []
    for tag, model, rate in rows:
        for i in range(100):
            tags.append([tag])
            models.append(model)
            outcomes.append("win" if i < rate * 100 else "loss")
    table = TagTable.count(tags, models, outcomes)
    a, b = tag_strengths(table, ["a", "b"], min_support=10)
    assert [t for t, _, _ in a.strongest] == ["poem"] and [t for t, _, _ in b.weakest] == ["poem"]
    assert a.weakest == [] and b.strongest == []  # proof is hard for both; chat and misc do not differ
    # (0.95 − 0.6875) − (0.5 − 0.58): its lift over its overall rate, less b's lift on the same tag
    assert a.strongest[0][1] == pytest.approx(0.3425)


def test_models_routes_over_a_new_catalogue_with_no_new_history(router_dir, tmp_path):
    """``tagrouter models R --catalog C`` saves a new version over C: a new model with no counts, the kept
    ones with their counts and new cards, a dropped one no longer routed to; the old version stays.
    Bug caught: a command that drops the learned counts, keeps old prices, or rewrites the live version."""
    import shutil

    import yaml

    from tagrouter.artifact import live_version

    folder = tmp_path / "router"
    shutil.copytree(router_dir, folder)
    before = TagRouter.load(folder)
    first = live_version(folder).name
    cards = yaml.safe_load((EXAMPLES / "catalog.yaml").read_text())
    cards["models"] = [c for c in cards["models"] if c["name"] != "mid-70b"]
    cards["models"][1]["output_usd_per_1m"] = 40.0  # large-api re-priced
    cards["models"].append({"name": "new-8b", "input_usd_per_1m": 0.1, "output_usd_per_1m": 0.1})
    new = tmp_path / "catalog.yaml"
    new.write_text(yaml.safe_dump(cards))
    result = runner.invoke(app, ["models", str(folder), "--catalog", str(new)])
    assert result.exit_code == 0, result.output
    said = json.loads(result.output.splitlines()[0])
    assert said == {
        "models": ["small-7b", "large-api", "new-8b"],
        "added": ["new-8b"],
        "dropped": ["mid-70b"],
        "changed": ["large-api"],
    }
    after = TagRouter.load(folder)
    assert live_version(folder).name != first and TagRouter.load(folder / first).models == before.models
    assert after.models == ["small-7b", "large-api", "new-8b"]
    assert after.catalog["large-api"].output_usd_per_1m == 40.0
    old_table, table = before.model.table, after.model.table
    for name in ("small-7b", "large-api"):
        kept = table.counts[:, table.model_index[name]]
        assert kept.sum() > 0
        assert np.array_equal(kept, old_table.counts[:, old_table.model_index[name]])
    assert table.counts[:, table.model_index["new-8b"]].sum() == 0
    assert after.route("Write a haiku about rain.").model in after.models
