"""Shared pieces of the collection tests: queries with answers (real AlpacaEval answers where the shared
data is present, else generated), replay upstreams for the pool and the reference, and a catalogue."""

from __future__ import annotations

import gzip
import json
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from conftest import SHARED_DATA
from threaded import ThreadedServer

from tagrouter.catalog import Catalog, Endpoint, ModelCard
from tagrouter.testing.judge import JudgeBehaviour, create_judge_app, longer_wins
from tagrouter.testing.replay import ReplayBehaviour, create_replay_app

#: catalogue name -> AlpacaEval model whose real answers it replays
REAL_MODELS = {
    "cheap": "llama-2-7b-chat-hf",
    "dear": "gpt4",
    "ref": "text_davinci_003",
    "new": "zephyr-7b-beta",
}
PRICES = {"cheap": (0.1, 0.2), "dear": (10.0, 30.0), "ref": (5.0, 15.0), "new": (0.5, 1.0)}
N_QUERIES = 12
MAX_WORDS = 256


def _real_answers() -> tuple[list[str], dict[str, dict[str, str]]] | None:
    outputs_path = SHARED_DATA / "model_outputs_with_verdicts.jsonl.gz"
    if not outputs_path.is_file():
        return None
    instructions = {}
    with (SHARED_DATA / "instructions.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["idx"] < N_QUERIES:
                instructions[row["idx"]] = row["instruction"]
    wanted = {f'{{"model_dir": "{m}",': name for name, m in REAL_MODELS.items()}
    answers: dict[str, dict[str, str]] = {name: {} for name in REAL_MODELS}
    with gzip.open(outputs_path, "rt", encoding="utf-8") as handle:
        for line in handle:
            prefix = line[: line.index(",") + 1]
            if prefix in wanted:
                row = json.loads(line)
                if row["idx"] in instructions:
                    answers[wanted[prefix]][instructions[row["idx"]]] = row["output"]
    queries = [instructions[i] for i in sorted(instructions)]
    return queries, answers


def _generated_answers() -> tuple[list[str], dict[str, dict[str, str]]]:
    topics = [
        "sorting",
        "poems",
        "tax law",
        "bread",
        "rust",
        "tides",
        "chess",
        "jazz",
        "moss",
        "kites",
        "SQL",
        "owls",
    ]
    queries = [f"Tell me something useful about {topic}." for topic in topics]
    length = {"cheap": 10, "dear": 60, "ref": 30, "new": 90}  # sentences: answers of about 80 to 900 words
    answers = {
        name: {q: " ".join([f"{name} on {q}"] * (length[name] + i % 3)) for i, q in enumerate(queries)}
        for name in REAL_MODELS
    }
    return queries, answers


_CACHED: list[tuple[list[str], dict[str, dict[str, str]]]] = []


def answer_data() -> tuple[list[str], dict[str, dict[str, str]], bool]:
    """(queries, answers per model name, whether they are real AlpacaEval answers); read once. Answers are
    cut to :data:`MAX_WORDS` words: the replay upstream counts words as tokens and does not stop at
    ``max_tokens`` as a real upstream does, so no answer may pass the smallest ``--max-tokens`` used."""
    if not _CACHED:
        queries, answers = _real_answers() or _generated_answers()
        cut = {
            m: {q: " ".join(a.split(" ")[:MAX_WORDS]) for q, a in by_query.items()}
            for m, by_query in answers.items()
        }
        _CACHED.append((queries, cut))
    queries, answers = _CACHED[0]
    return queries, answers, (SHARED_DATA / "model_outputs_with_verdicts.jsonl.gz").is_file()


@dataclass
class Upstreams:
    """Replay servers for the four models and their call counters."""

    urls: dict[str, str]
    behaviours: dict[str, ReplayBehaviour]

    def calls(self) -> dict[str, int]:
        return {name: b.calls for name, b in self.behaviours.items()}

    def catalog(self, names: tuple[str, ...] = ("cheap", "dear", "ref")) -> Catalog:
        return Catalog(
            models=[
                ModelCard(
                    name=name,
                    input_usd_per_1m=PRICES[name][0],
                    output_usd_per_1m=PRICES[name][1],
                    endpoint=Endpoint(base_url=self.urls[name] + "/v1", model=f"{name}-upstream"),
                )
                for name in names
            ]
        )


def start_upstreams(stack: ExitStack) -> Upstreams:
    _, answers, _ = answer_data()
    urls, behaviours = {}, {}
    for name in REAL_MODELS:
        behaviours[name] = ReplayBehaviour()
        server = stack.enter_context(ThreadedServer(create_replay_app(name, answers[name], behaviours[name])))
        urls[name] = server.url
    return Upstreams(urls, behaviours)


def start_judge(
    stack: ExitStack, rule=longer_wins, behaviour: JudgeBehaviour | None = None
) -> tuple[str, JudgeBehaviour]:
    """A judge server; returns its spec (priced at $1 / $2 per 1M tokens) and its behaviour."""
    behaviour = behaviour or JudgeBehaviour()
    server = stack.enter_context(ThreadedServer(create_judge_app(rule, behaviour)))
    return f"judge-model@{server.url}/v1?input_usd_per_1m=1&output_usd_per_1m=2", behaviour


def write_queries(path: Path) -> Path:
    queries, _, _ = answer_data()
    path.write_text("\n".join(json.dumps({"query": q}) for q in queries) + "\n", encoding="utf-8")
    return path
