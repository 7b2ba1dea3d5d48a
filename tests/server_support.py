"""Shared pieces of the gateway tests: a tiny router fitted on synthetic history, and its queries.

Three models: ``cheap`` always loses on "python code" queries and always wins on greetings, ``mid`` and
``dear`` always win. With the ``within`` rule at θ = 0.3 code goes to ``mid`` and greetings to ``cheap``.
"""

from __future__ import annotations

from pathlib import Path

from tagrouter import Catalog, Decider, Endpoint, HistoryRecord, ModelCard, SmoothedScorer, TagRouter
from tagrouter.tagging.embedded import EmbeddedTagger

VERBS = [
    "sorts",
    "reverses",
    "filters",
    "sums",
    "maps",
    "flattens",
    "deduplicates",
    "shuffles",
    "counts",
    "splits",
    "merges",
    "zips",
    "chunks",
    "rotates",
    "searches",
    "parses",
    "validates",
    "compresses",
    "encodes",
    "formats",
]
NAMES = ["Alice", "Bob", "Carol", "Dave", "Eve", "Frank", "Grace", "Heidi", "Ivan", "Judy"]
CODE = [f"Write a python function that {verb} a list" for verb in VERBS]
GREETINGS = [
    f"{greeting} {name}, how are you today?" for greeting in ("Hello", "Good morning") for name in NAMES
]
CODE_QUERY = "Write a python function that inverts a dict"
GREETING_QUERY = "Hello Zoe, how are you today?"
MODELS = ("cheap", "mid", "dear")
#: what each upstream id is called upstream (the catalogue maps names to these ids)
UPSTREAM_IDS = {"cheap": "cheap-7b", "mid": "mid-70b", "dear": "dear-xl"}


def history() -> list[HistoryRecord]:
    records = []
    for number, query in enumerate(CODE + GREETINGS):
        is_code = number < len(CODE)
        for model in MODELS:
            outcome = "loss" if model == "cheap" and is_code else "win"
            records.append(
                HistoryRecord(
                    query_id=str(number), query=query, model=model, outcome=outcome, output_tokens=100
                )
            )
    return records


def catalog(base_url: str = "http://127.0.0.1:9/v1") -> Catalog:
    prices = {"cheap": (0.1, 0.2), "mid": (1.0, 2.0), "dear": (10.0, 30.0)}
    return Catalog(
        models=[
            ModelCard(
                name=name,
                input_usd_per_1m=prices[name][0],
                output_usd_per_1m=prices[name][1],
                endpoint=Endpoint(base_url=base_url, model=UPSTREAM_IDS[name]),
            )
            for name in MODELS
        ]
    )


def fit_router() -> TagRouter:
    tagger = EmbeddedTagger.fit(CODE + GREETINGS, min_count=1)
    router = TagRouter.fit(history(), catalog(), tagger=tagger, scorer=SmoothedScorer(prior_strength=2))
    return router.with_decider(Decider("within", 0.3))


def save_router(folder: Path) -> Path:
    fit_router().save(folder)
    return folder
