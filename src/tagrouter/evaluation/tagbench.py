"""The tag benchmark: do a tagger's tags say what a person would say about a query?

Measured on labelled queries (the labels of the development suite: RouteLLM's MMLU subjects, DCRouter's
task types, GSM8K, MT-bench's categories), with a tagger fitted on the set's own queries, as a router fit
would:

- **coarse named**: the share of queries whose coarse tags (task type and domain of the seed taxonomy)
  include one that names the query's label. Which seed tags name a label is a documented mapping
  (:data:`LABEL_TAGS`); an MMLU subject is named by the two seed domains whose descriptions are most similar
  to the subject's name (:func:`nearest_seed_tags`).
- **fine grounded**: the share of fine tags every word of which occurs in the query, as written, as one of
  its dictionary lemmas (``child`` for ``children``) or as a regular inflection (``email`` for ``emails``).
- **fine non-words**: the share of fine tags with a word that occurs in none of the set's queries, neither
  as written nor as a dictionary lemma of a word written there: a truncation by the normaliser
  ("christma", "cooky"), never what a person writes.
- a **spot check** list: a seeded sample of queries with their label and tags, to read.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from lemminflect import getAllLemmas

from tagrouter.embedding import Embedder
from tagrouter.tagging.normalize import normalize_tag
from tagrouter.tagging.taxonomy import DOMAINS, TASK_TYPES

_WORD = re.compile(r"[a-z0-9+#]+(?:['.\-][a-z0-9+#]+)*")

#: Seed tags that name each label of DCRouter's task types, GSM8K and MT-bench's categories.
LABEL_TAGS: dict[str, tuple[str, ...]] = {
    # DCRouter
    "agentverse-logicgrid": ("logic puzzle",),
    "agentverse-mgsm": ("math word problem", "math", "mathematics"),
    "arc_challenge": ("science", "factual question"),
    "commongen": ("creative writing", "language"),
    "commonsense_qa": ("factual question", "logic puzzle"),
    "gpqa": ("science", "factual question"),
    "gsm8k": ("math word problem", "math", "mathematics"),
    "human_eval": ("coding", "programming"),
    "math": ("math", "mathematics", "math word problem"),
    "mbpp": ("coding", "programming"),
    "mmlu": ("factual question", "education"),
    "natural_qa": ("factual question",),
    "openbook_qa": ("science", "factual question"),
    "trivia_qa": ("factual question",),
    # MT-bench
    "writing": (
        "creative writing",
        "essay writing",
        "email writing",
        "professional writing",
        "social media post",
        "marketing copy",
        "poetry",
        "song lyrics",
    ),
    "roleplay": ("role play", "dialogue"),
    "reasoning": ("logic puzzle", "math word problem"),
    "coding": ("coding", "programming", "debugging", "code explanation"),
    "extraction": ("information extraction", "data formatting", "classification", "summarization"),
    "stem": ("science", "mathematics", "technology", "medicine", "explanation"),
    "humanities": (
        "history",
        "philosophy",
        "literature",
        "politics",
        "law",
        "religion",
        "art and design",
        "psychology",
        "education",
        "analysis",
    ),
}


@dataclass(frozen=True)
class LabelledSet:
    """Queries with one label each and, per label, the seed tags that name it."""

    name: str
    texts: list[str]
    labels: list[str]
    naming: dict[str, tuple[str, ...]]


def nearest_seed_tags(labels: Sequence[str], embedder: Embedder, k: int = 2) -> dict[str, tuple[str, ...]]:
    """Per label (an MMLU subject such as ``high_school_biology``), the ``k`` seed domains whose
    descriptions are most similar to its name."""
    names = list(DOMAINS)
    domains = embedder.embed([f"{n} {DOMAINS[n]}" for n in names])
    unique = sorted(set(labels))
    similarity = embedder.embed([u.replace("_", " ") for u in unique]) @ domains.T
    return {
        u: tuple(names[j] for j in np.argsort(-row)[:k]) for u, row in zip(unique, similarity, strict=True)
    }


def query_words(text: str) -> set[str]:
    """The lower-cased words of ``text``."""
    return set(_WORD.findall(text.lower()))


def word_forms(words: set[str]) -> set[str]:
    """``words`` and every dictionary lemma of each (lemminflect's English lexicon)."""
    forms = set(words)
    for word in words:
        for lemmas in getAllLemmas(word).values():
            forms.update(lemmas)
    return forms


def inflections(word: str) -> set[str]:
    """``word`` and its regular English plural and verb forms (what a tag's word may appear as)."""
    forms = {word, word + "s", word + "es", word + "ing", word + "ed", word + "d"}
    if word.endswith("y"):
        forms |= {word[:-1] + "ies", word[:-1] + "ied"}
    if word.endswith("e"):
        forms.add(word[:-1] + "ing")
    return forms


def is_grounded(tag: str, words: set[str]) -> bool:
    """Every word of ``tag`` occurs in ``words``, as written or as a regular inflection."""
    return all(inflections(w) & words for w in tag.split())


def coarse_tags() -> set[str]:
    """The seed tags as a tagger's vocabulary holds them (normalised)."""
    return {t for t in map(normalize_tag, [*TASK_TYPES, *DOMAINS]) if t}


def measure(
    data: LabelledSet, tag_lists: Sequence[Sequence[str]], spot: int = 20, seed: int = 0
) -> dict[str, Any]:
    """The benchmark's figures of ``tag_lists`` (one per query of ``data``), see the module docstring."""
    coarse = coarse_tags()
    naming = {label: {normalize_tag(t) for t in tags} for label, tags in data.naming.items()}
    named = [
        bool(naming.get(label, set()) & set(tags)) for label, tags in zip(data.labels, tag_lists, strict=True)
    ]
    corpus: set[str] = set()
    for text in data.texts:
        corpus |= query_words(text)
    corpus = word_forms(corpus)
    grounded = fine = 0
    nonwords: Counter[str] = Counter()
    for text, tags in zip(data.texts, tag_lists, strict=True):
        words = word_forms(query_words(text))
        for tag in tags:
            if tag in coarse:
                continue
            fine += 1
            grounded += is_grounded(tag, words)
            if any(w not in corpus for w in tag.split()):
                nonwords[tag] += 1
    picks = np.random.default_rng(seed).choice(len(data.texts), min(spot, len(data.texts)), replace=False)
    return {
        "queries": len(data.texts),
        "labels": len(set(data.labels)),
        "coarse_named": float(np.mean(named)) if named else 0.0,
        "fine_grounded": grounded / fine if fine else 0.0,
        "fine_nonwords": sum(nonwords.values()) / fine if fine else 0.0,
        "nonword_tags": [t for t, _ in nonwords.most_common(20)],
        "fine_per_query": fine / max(len(data.texts), 1),
        "spot_check": [
            {"label": data.labels[i], "query": data.texts[i][:200], "tags": list(tag_lists[i])}
            for i in sorted(picks.tolist())
        ],
    }


def run(
    sets: Sequence[LabelledSet], fit_tagger: Callable[[list[str]], Callable[[list[str]], list[list[str]]]]
) -> dict[str, dict[str, Any]]:
    """Fit a tagger on each set's queries (``fit_tagger(texts)`` returns its tag function), tag them and
    measure."""
    return {data.name: measure(data, fit_tagger(data.texts)(data.texts)) for data in sets}


# ---- the suite's labelled data ---------------------------------------------------------------------------
def dcrouter_set(folder: Path) -> LabelledSet:
    """DCRouter's prompts (deduplicated by text, first kept) labelled by task type."""
    texts, labels, seen = [], [], set()
    with gzip.open(folder / "prompts.jsonl.gz", "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["prompt"] not in seen:
                seen.add(row["prompt"])
                texts.append(row["prompt"])
                labels.append(row["task"])
    return LabelledSet("dcrouter", texts, labels, LABEL_TAGS)


def mmlu_set(folder: Path, embedder: Embedder, sample: int = 2000, seed: int = 0) -> LabelledSet:
    """A seeded sample of RouteLLM's MMLU questions labelled by subject."""
    with gzip.open(folder / "mmlu_responses.csv.gz", "rt", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    keep = sorted(np.random.default_rng(seed).choice(len(rows), min(sample, len(rows)), replace=False))
    labels = [rows[i]["subject"] for i in keep]
    return LabelledSet("mmlu", [rows[i]["prompt"] for i in keep], labels, nearest_seed_tags(labels, embedder))


def gsm8k_set(folder: Path) -> LabelledSet:
    """RouteLLM's GSM8K questions, all labelled ``gsm8k``."""
    with gzip.open(folder / "gsm8k_responses.csv.gz", "rt", encoding="utf-8", newline="") as handle:
        texts = [row["prompt"] for row in csv.DictReader(handle)]
    return LabelledSet("gsm8k", texts, ["gsm8k"] * len(texts), LABEL_TAGS)


def mt_bench_set(folder: Path) -> LabelledSet:
    """MT-bench's first turns labelled by category."""
    texts, labels = [], []
    with gzip.open(folder / "mt_bench_question.jsonl.gz", "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            texts.append(row["turns"][0])
            labels.append(row["category"])
    return LabelledSet("mt_bench", texts, labels, LABEL_TAGS)


def suite_sets(root: Path, embedder: Embedder) -> list[LabelledSet]:
    """Every labelled set of the suite whose data is present under ``root``."""
    sets = []
    if (root / "llmrouter_dcrouter" / "prompts.jsonl.gz").is_file():
        sets.append(dcrouter_set(root / "llmrouter_dcrouter"))
    routellm = root / "routellm"
    if (routellm / "mmlu_responses.csv.gz").is_file():
        sets.append(mmlu_set(routellm, embedder))
    if (routellm / "gsm8k_responses.csv.gz").is_file():
        sets.append(gsm8k_set(routellm))
    if (routellm / "mt_bench_question.jsonl.gz").is_file():
        sets.append(mt_bench_set(routellm))
    return sets
