"""tagrouter collect: sampling, judging in both orders, verdict parsing, the budget, resuming, new models.

Everything runs on loopback: replay upstreams for the pool and the reference (real AlpacaEval answers when
the shared data is present) and a judge server whose rule is "the longer answer is better"."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import ExitStack

import pytest
from collect_support import answer_data, start_judge, start_upstreams, write_queries
from conftest import SHARED_DATA, needs_shared_data
from typer.testing import CliRunner

from tagrouter.cli import app
from tagrouter.collect.budget import Budget, BudgetExhausted
from tagrouter.collect.cache import CollectCache
from tagrouter.collect.client import ChatClient
from tagrouter.collect.judging import PROMPT_VERSION, combine, parse_judge, parse_verdict
from tagrouter.collect.run import build_plan, estimate, run_collection
from tagrouter.collect.sampling import SampledQuery, sample_queries, stratified_sample
from tagrouter.records import query_id, read_history
from tagrouter.testing.judge import JudgeBehaviour, always_first, longer_wins


@pytest.fixture(scope="module")
def servers():
    with ExitStack() as stack:
        yield stack, start_upstreams(stack)


def expected_outcome(model: str) -> dict[str, str]:
    """Outcome per query of ``model`` against ``ref`` under the judge's longer-wins rule."""
    queries, answers, _ = answer_data()
    out = {}
    for q in queries:
        mine, theirs = len(answers[model][q]), len(answers["ref"][q])
        out[q] = "win" if mine > theirs else "loss" if mine < theirs else "tie"
    return out


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


# ---- verdicts and orders ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("Assistant A is more precise. [[A]]", "A"),
        ("The format asks for [[A]] or [[B]]; here B is better: [[B]]", "B"),
        ("Neither is better. [[C]]", "tie"),
        ("[[tie]]", "tie"),
        ("Output (b)", "B"),
        ('{"winner": "A", "reason": "shorter"}', "A"),
        ('Reasoning first. {"verdict": "tie"}', "tie"),
        ("B", "B"),
        ("  a.  ", "A"),
        ("Final verdict: Assistant B", "B"),
        ("Winner: A", "A"),
        ("Verdict: a tie", "tie"),
        ("The answer is a good start, but", None),
        ("Both have merits; I cannot decide.", None),
        ("", None),
    ],
)
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) == verdict


def test_both_orders_must_agree():
    assert combine("A", "B") == "win"  # X shown first wins, and X shown second wins
    assert combine("B", "A") == "loss"
    assert combine("A", "A") == "tie"  # the first position won both times: position bias, a tie
    assert combine("tie", "B") == "tie"
    assert combine(None, "B") == "tie"  # no verdict counts as a tie
    assert combine("tie", "tie") == "tie"


def test_judge_spec():
    judge = parse_judge(
        "gpt-4o-mini@https://api.example.com/v1?api_key_env=KEY&input_usd_per_1m=0.15&max_tokens=64"
    )
    assert (judge.target.model, judge.target.base_url, judge.target.api_key_env) == (
        "gpt-4o-mini",
        "https://api.example.com/v1",
        "KEY",
    )
    assert (judge.target.input_usd_per_1m, judge.max_tokens) == (0.15, 64)
    assert judge.identity == "gpt-4o-mini@https://api.example.com/v1"
    # the tagger spec grammar: the openai backend's form names the same judge
    assert parse_judge("openai:gpt-4o-mini@https://api.example.com/v1?api_key_env=KEY") == parse_judge(
        "gpt-4o-mini@https://api.example.com/v1?api_key_env=KEY"
    )
    with pytest.raises(ValueError, match="options must look like"):
        parse_judge("m@http://x/v1?colour")
    with pytest.raises(ValueError, match="must start with http"):
        parse_judge("m@ftp://x/v1")
    with pytest.raises(ValueError, match="unknown option 'colour'"):
        parse_judge("m@http://x/v1?colour=red")
    with pytest.raises(ValueError, match="expected MODEL@URL"):
        parse_judge("just-a-name")
    with pytest.raises(ValueError, match="concurrency='0' is out of range"):
        parse_judge("m@http://x/v1?concurrency=0")


# ---- sampling and budget ----------------------------------------------------------------------------------
def test_stratified_sample_covers_rare_kinds():
    strata = ["common"] * 90 + ["rare"] * 5 + ["rarer"] * 2
    chosen = stratified_sample(strata, 20, seed=1)
    picked = [strata[i] for i in chosen]
    assert (picked.count("rare"), picked.count("rarer"), picked.count("common")) == (5, 2, 13)
    assert chosen == stratified_sample(strata, 20, seed=1)  # seeded
    assert chosen != stratified_sample(strata, 20, seed=2)


def test_sample_queries_by_task_type():
    queries = [f"Write a python function that sorts a list of {n} numbers" for n in range(30)]
    queries += [
        "Write a haiku about autumn leaves",
        "Write a poem about the sea",
        "Translate 'hello' into French",
    ]
    sampled = sample_queries([*queries, queries[0]], 8, seed=0)  # a repeated query counts once
    assert len(sampled) == 8 and len({s.query_id for s in sampled}) == 8
    assert {s.query for s in sampled} >= set(queries[30:])  # the rare kinds are all in
    assert sampled[0].query_id == query_id(sampled[0].query)


def test_budget_refuses_before_it_is_exceeded():
    budget = Budget(1.0)
    budget.reserve(0.6)
    with pytest.raises(BudgetExhausted):
        budget.reserve(0.5)  # 0.6 held + 0.5 > 1.0
    budget.settle(0.6, 0.2)
    assert (budget.spent, budget.reserved) == (0.2, 0.0)
    with pytest.raises(BudgetExhausted):
        budget.reserve(0.1)  # once refused, the run stops


# ---- a whole collection -----------------------------------------------------------------------------------
def test_collect_writes_judged_history(servers, tmp_path):
    stack, upstreams = servers
    with ExitStack() as local:
        judge, behaviour = start_judge(local)
        upstreams.catalog().save(tmp_path / "catalog.yaml")
        before = upstreams.calls()
        result = invoke(
            "collect", write_queries(tmp_path / "queries.jsonl"), "--catalog", tmp_path / "catalog.yaml",
            "--judge", judge, "--reference", "ref", "--out", tmp_path / "history.jsonl",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    queries, answers, _ = answer_data()
    calls = {k: v - before[k] for k, v in upstreams.calls().items()}
    assert calls == {"cheap": len(queries), "dear": len(queries), "ref": len(queries), "new": 0}
    assert behaviour.calls == 2 * 2 * len(queries)  # two judged models, both orders
    seen = set(behaviour.seen)
    for q in queries:  # both orders of every pair were asked
        for model in ("cheap", "dear"):
            assert (q, answers[model][q], answers["ref"][q]) in seen
            assert (q, answers["ref"][q], answers[model][q]) in seen
    records = read_history(tmp_path / "history.jsonl")
    assert len(records) == 3 * len(queries)
    for model in ("cheap", "dear"):
        expected = expected_outcome(model)
        for record in (r for r in records if r.model == model):
            assert record.outcome == expected[record.query]
            assert record.judge == judge.split("?")[0] and record.judge_prompt == PROMPT_VERSION
            assert record.output_tokens == len(answers[model][record.query].split())
            assert record.input_tokens == len(record.query) // 4
            price_in, price_out = {"cheap": (0.1, 0.2), "dear": (10.0, 30.0)}[model]
            assert record.cost == pytest.approx(
                (record.input_tokens * price_in + record.output_tokens * price_out) / 1e6
            )
    assert {r.outcome for r in records if r.model == "ref"} == {"tie"}
    assert all(r.judge is None and r.reference == "ref" for r in records if r.model == "ref")
    assert "spent $" in result.output


def _collect(upstreams, tmp_path, spec: str, queries: list[str], models: list[str], **client_options):
    sampled = [SampledQuery(query_id(q), q, "x") for q in queries]
    plan = build_plan(upstreams.catalog(), sampled, reference="ref", judge=parse_judge(spec), models=models)

    async def run():
        client = ChatClient(**client_options)
        try:
            return await run_collection(plan, client, CollectCache(tmp_path / "cache"), Budget())
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_judge_429_500_and_timeouts_are_retried(servers, tmp_path):
    _, upstreams = servers
    queries, _, _ = answer_data()
    behaviour = JudgeBehaviour(faults=["429", "500", "slow"], slow_s=1.0)
    with ExitStack() as local:
        spec, _ = start_judge(local, behaviour=behaviour)
        result = _collect(
            upstreams, tmp_path, spec + "&timeout_s=0.3", queries[:1], ["cheap"], backoff_s=0.01
        )
    assert result.complete and result.failures == []
    assert behaviour.calls == 3 + 2  # three failed attempts, then one answer per order
    assert result.records[0].outcome == expected_outcome("cheap")[queries[0]]


def test_malformed_replies_are_retried_then_count_as_ties(servers, tmp_path):
    _, upstreams = servers
    queries, answers, _ = answer_data()

    def garbled_when_reference_first(query: str, answer_a: str, answer_b: str) -> str:
        return "garbled" if answer_a == answers["ref"][query] else longer_wins(query, answer_a, answer_b)

    with ExitStack() as local:
        spec, behaviour = start_judge(local, rule=garbled_when_reference_first)
        result = _collect(upstreams, tmp_path, spec + "&malformed_retries=2", queries[:2], ["dear"])
    assert behaviour.calls == 2 * (1 + 3)  # per pair: one order answered, the other asked three times
    assert result.no_verdicts == 2
    assert [r.outcome for r in result.records] == ["tie", "tie"]
    verdicts = CollectCache(tmp_path / "cache").verdicts.entries.values()
    assert sorted(v["attempts"] for v in verdicts) == [1, 1, 3, 3]
    assert [v["choice"] for v in verdicts if v["attempts"] == 3] == [None, None]  # cached: never paid again


def test_budget_stops_the_run_and_a_rerun_resumes_without_paying_twice(servers, tmp_path):
    _, upstreams = servers
    queries, _, _ = answer_data()
    upstreams.catalog().save(tmp_path / "catalog.yaml")
    write_queries(tmp_path / "queries.jsonl")
    with ExitStack() as local:
        judge, behaviour = start_judge(local)
        args = [
            "collect", tmp_path / "queries.jsonl", "--catalog", tmp_path / "catalog.yaml", "--judge", judge,
            "--reference", "ref", "--out", tmp_path / "history.jsonl", "--max-tokens", "256", "--concurrency", "1",
        ]  # fmt: skip
        before = upstreams.calls()
        stopped = invoke(*args, "--budget-usd", "0.05")
        assert stopped.exit_code == 3, stopped.output
        assert "stopped by the budget" in stopped.output
        cache = CollectCache(tmp_path / "history.jsonl.cache")
        first_calls = {k: v - before[k] for k, v in upstreams.calls().items()}
        first_judge_calls = behaviour.calls
        spent = sum(e["cost"] for e in cache.answers.entries.values()) + sum(
            e["cost"] for e in cache.verdicts.entries.values()
        )
        assert 0 < spent <= 0.05
        partial = read_history(tmp_path / "history.jsonl")
        assert 0 < len(partial) < 3 * len(queries)
        assert sum(first_calls.values()) == len(cache.answers.entries)  # every paid answer is cached
        assert first_judge_calls == len(cache.verdicts.entries)

        resumed = invoke(*args)
        assert resumed.exit_code == 0, resumed.output
    total = {k: v - before[k] for k, v in upstreams.calls().items()}
    assert total == {"cheap": len(queries), "dear": len(queries), "ref": len(queries), "new": 0}  # none twice
    assert behaviour.calls == 2 * 2 * len(queries)
    records = read_history(tmp_path / "history.jsonl")
    assert len(records) == 3 * len(queries)
    assert {r.query_id: r.outcome for r in records if r.model == "cheap"} == {
        query_id(q): o for q, o in expected_outcome("cheap").items()
    }


def test_interrupted_run_resumes_without_repeating_calls(servers, tmp_path):
    _, upstreams = servers
    queries, _, _ = answer_data()
    sampled = [SampledQuery(query_id(q), q, "x") for q in queries]
    cache_dir = tmp_path / "cache"
    with ExitStack() as local:
        spec, behaviour = start_judge(local)
        plan = build_plan(
            upstreams.catalog(), sampled, reference="ref", judge=parse_judge(spec), models=["dear"]
        )

        class Interrupt(Exception):
            pass

        def stop_after_three(done: int, total: int, spent: float) -> None:
            if done == 3:
                raise Interrupt

        async def run(progress=None):
            client = ChatClient(concurrency=1)
            try:
                return await run_collection(plan, client, CollectCache(cache_dir), Budget(), progress)
            finally:
                await client.aclose()

        before = upstreams.calls()
        with pytest.raises(Interrupt):
            asyncio.run(run(stop_after_three))
        with (cache_dir / "answers.jsonl").open("a") as handle:
            handle.write('{"key": "cut short by a cra')  # a line the crash cut short is ignored
        time.sleep(0.3)  # a call cancelled in flight may still reach its server: count it before the rerun
        cached = CollectCache(cache_dir)
        calls_then = {k: v - before[k] for k, v in upstreams.calls().items()}
        judge_then = behaviour.calls
        assert len(cached.verdicts.entries) >= 6  # three pairs were judged before the interruption
        result = asyncio.run(run())
    assert result.complete
    now = {k: v - before[k] for k, v in upstreams.calls().items()}
    answers_cached = {"dear": 0, "ref": 0}
    for entry in cached.answers.entries.values():
        answers_cached[entry["model"]] += 1
    for model in ("dear", "ref"):  # the rerun asked only for what the cache lacked
        assert now[model] - calls_then[model] == len(queries) - answers_cached[model]
    assert behaviour.calls - judge_then == 2 * len(queries) - len(cached.verdicts.entries)


def test_new_model_joins_without_a_full_collection(servers, tmp_path):
    _, upstreams = servers
    queries, _, _ = answer_data()
    upstreams.catalog().save(tmp_path / "catalog.yaml")
    upstreams.catalog(("cheap", "dear", "ref", "new")).save(tmp_path / "catalog-new.yaml")
    write_queries(tmp_path / "queries.jsonl")
    with ExitStack() as local:
        judge, behaviour = start_judge(local)
        base = ["--judge", judge, "--reference", "ref", "--out", tmp_path / "history.jsonl"]
        first = invoke("collect", tmp_path / "queries.jsonl", "--catalog", tmp_path / "catalog.yaml", *base)
        assert first.exit_code == 0, first.output
        before, judge_before = upstreams.calls(), behaviour.calls
        added = invoke(
            "collect",
            tmp_path / "queries.jsonl",
            "--catalog",
            tmp_path / "catalog-new.yaml",
            "--models",
            "new",
            *base,
        )
        assert added.exit_code == 0, added.output
    delta = {k: v - before[k] for k, v in upstreams.calls().items()}
    assert delta == {"cheap": 0, "dear": 0, "ref": 0, "new": len(queries)}  # the reference answers are cached
    assert behaviour.calls - judge_before == 2 * len(queries)
    records = read_history(tmp_path / "history.jsonl")
    assert len(records) == 4 * len(queries)
    assert {r.query: r.outcome for r in records if r.model == "new"} == expected_outcome("new")

    old = [r for r in records if r.model != "new"]
    from tagrouter.records import write_history
    from tagrouter.router import TagRouter

    write_history(tmp_path / "old.jsonl", old)
    assert (
        invoke(
            "fit",
            tmp_path / "old.jsonl",
            "--catalog",
            tmp_path / "catalog.yaml",
            "--out",
            tmp_path / "router",
        ).exit_code
        == 0
    )
    updated = invoke(
        "update", tmp_path / "router", tmp_path / "history.jsonl", "--models", "new",
        "--catalog", tmp_path / "catalog-new.yaml",
    )  # fmt: skip
    assert updated.exit_code == 0, updated.output
    router = TagRouter.load(tmp_path / "router")
    assert router.models == ["cheap", "dear", "ref", "new"]
    counts = router.table.model_counts
    assert counts[router.table.model_index["new"]].sum() == len(queries)
    assert counts[router.table.model_index["cheap"]].sum() == len(queries)  # old records not learned twice
    assert f"learned {len(queries)} records" in updated.output


def test_dry_run_prints_the_cost_from_the_prices(servers, tmp_path):
    _, upstreams = servers
    queries = ["a" * 400, "b" * 800]  # 100 and 200 tokens at 4 characters per token
    sampled = [SampledQuery(query_id(q), q, "x") for q in queries]
    judge = parse_judge("j@http://127.0.0.1:9/v1?input_usd_per_1m=1&output_usd_per_1m=2&malformed_retries=0")
    plan = build_plan(upstreams.catalog(), sampled, reference="ref", judge=judge, max_tokens=100)
    rows = {row.what: row for row in estimate(plan, answer_tokens=300, verdict_tokens=150)}
    cheap = rows["answers: cheap"]
    assert cheap.calls == 2
    assert cheap.expected_usd == pytest.approx(((100 + 200) * 0.1 + 2 * 300 * 0.2) / 1e6)
    assert cheap.at_most_usd == pytest.approx(((400 + 4 + 16 + 800 + 4 + 16) * 0.1 + 2 * 100 * 0.2) / 1e6)
    assert rows["answers: ref (reference)"].calls == 2
    judge_row = rows["judge: j@http://127.0.0.1:9/v1"]
    assert judge_row.calls == 2 * 2 * 2  # 2 judged models × 2 orders × 2 queries
    write_queries(tmp_path / "queries.jsonl")
    upstreams.catalog().save(tmp_path / "catalog.yaml")
    shown = invoke(
        "collect", tmp_path / "queries.jsonl", "--catalog", tmp_path / "catalog.yaml", "--judge", "ref",
        "--reference", "ref", "--out", tmp_path / "h.jsonl", "--dry-run",
    )  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert "total" in shown.output and "judge: ref-upstream@" in shown.output
    assert not (tmp_path / "h.jsonl").exists() and not (tmp_path / "h.jsonl.cache").exists()


def test_position_biased_judge_gives_ties(servers, tmp_path):
    _, upstreams = servers
    queries, _, _ = answer_data()
    with ExitStack() as local:
        spec, _ = start_judge(local, rule=always_first)
        result = _collect(upstreams, tmp_path, spec, queries[:4], ["dear"])
    assert [r.outcome for r in result.records] == ["tie"] * 4


def test_records_name_their_judge_and_old_files_stay_readable(tmp_path):
    (tmp_path / "old.jsonl").write_text('{"query_id": "1", "query": "q", "model": "m", "outcome": "win"}\n')
    (tmp_path / "new.csv").write_text(
        "query_id,query,model,outcome,reference,judge,judge_prompt\n"
        "1,q,m,loss,ref,j@http://x/v1,pairwise-v1\n"
        "2,r,m,tie,ref,,\n"
    )
    old, first, second = read_history([tmp_path / "old.jsonl", tmp_path / "new.csv"])
    assert (old.judge, old.judge_prompt) == (None, None)
    assert (first.judge, first.judge_prompt) == ("j@http://x/v1", "pairwise-v1")
    assert (second.judge, second.judge_prompt) == (None, None)


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        (
            "--judge",
            "no-such-judge",
            "judge spec 'no-such-judge': expected MODEL@URL[?options] or a catalogue model",
        ),
        ("--reference", "nobody", "model 'nobody' is not in the catalogue"),
        ("--models", "cheap,ghost", "model 'ghost' is not in the catalogue"),
    ],
)
def test_bad_collect_input_is_one_line_and_exit_2(
    servers, tmp_path, monkeypatch, capsys, option, value, expected
):
    import sys

    from tagrouter.cli import main

    _, upstreams = servers
    upstreams.catalog().save(tmp_path / "catalog.yaml")
    settings = {"--judge": "ref", "--reference": "ref", "--models": "cheap", option: value}
    args = ["collect", write_queries(tmp_path / "q.jsonl"), "--catalog", tmp_path / "catalog.yaml"]
    args += [*(x for item in settings.items() for x in item), "--out", tmp_path / "h.jsonl"]
    monkeypatch.setattr(sys, "argv", ["tagrouter", *map(str, args)])
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err
    assert exited.value.code == 2 and expected in err and "Traceback" not in err
    assert not (tmp_path / "h.jsonl").exists() and not (tmp_path / "h.jsonl.cache").exists()


@needs_shared_data()
def test_the_upstreams_replay_real_alpacaeval_answers():
    queries, answers, real = answer_data()
    instructions = [json.loads(line)["instruction"] for line in (SHARED_DATA / "instructions.jsonl").open()]
    assert real and queries == instructions[: len(queries)]
    assert all(len(answers[m]) == len(queries) for m in ("cheap", "dear", "ref", "new"))
    assert len({answers["cheap"][queries[0]], answers["dear"][queries[0]], answers["ref"][queries[0]]}) == 3
