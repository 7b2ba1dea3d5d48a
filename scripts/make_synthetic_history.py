"""Write a synthetic judged history (queries × models) and its catalogue, for timing ``tagrouter eval``.

Queries are built from topic words and task templates; each model has its own accept rate per topic, so
routing can pay off. Usage: ``python scripts/make_synthetic_history.py OUT [--queries N] [--models M]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tagrouter.catalog import Catalog, ModelCard
from tagrouter.records import HistoryRecord, write_history

TOPICS = {
    "python": "function list loop class exception decorator generator",
    "sql": "query join table index select group aggregate",
    "poetry": "poem rhyme haiku verse sonnet metaphor stanza",
    "history": "empire war revolution treaty dynasty century king",
    "physics": "force energy momentum particle wave field gravity",
    "cooking": "recipe oven flour sauce garlic bake simmer",
    "finance": "budget loan interest stock invest tax savings",
    "travel": "flight hotel itinerary museum beach visa train",
    "biology": "cell gene protein enzyme species evolution organ",
    "law": "contract tenant court liability clause lawsuit statute",
}
TEMPLATES = (
    "Explain how {a} relates to {b} in simple terms.",
    "Write a short piece about {a} and {b}.",
    "What is the difference between {a} and {b}?",
    "Give three tips on {a}, with an example of {b}.",
    "Summarise the role of {a} when dealing with {b}.",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    topics = list(TOPICS)
    models = [f"model-{j}" for j in range(args.models)]
    skill = rng.uniform(0.3, 0.95, size=(len(models), len(topics)))  # accept rate per model and topic
    records = []
    for i in range(args.queries):
        t = int(rng.integers(len(topics)))
        a, b = rng.choice(TOPICS[topics[t]].split(), 2, replace=False)
        query = f"{TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(a=a, b=b)} (#{i})"
        for j, model in enumerate(models):
            outcome = "win" if rng.random() < skill[j, t] else "loss"
            records.append(HistoryRecord(query_id=f"q{i}", query=query, model=model, outcome=outcome))
    prices = np.geomspace(0.1, 30, len(models))
    catalog = Catalog(
        models=[
            ModelCard(name=m, input_usd_per_1m=p, output_usd_per_1m=2 * p)
            for m, p in zip(models, prices, strict=True)
        ]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    write_history(args.out / "history.jsonl", records)
    catalog.save(args.out / "catalog.yaml")
    print(f"wrote {len(records)} records to {args.out}")


if __name__ == "__main__":
    main()
