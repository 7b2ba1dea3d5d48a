"""Which logged queries to collect judged history for: a seeded sample stratified by task type.

The strata are the coarse tags of the embedded default tagger (its task type, e.g. ``coding`` or
``poetry``), fitted on the logged queries themselves (on a seeded subsample of at most
:data:`FIT_QUERIES` of them). The sample takes the strata in turns, one query at a time, so that every
kind of query gets the same share until it runs out: a rare kind is covered in full before a common kind
gets more. Equal query texts are one query; its id is a hash of the text (:func:`records.query_id`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from tagrouter.records import query_id
from tagrouter.tagging.normalize import normalize_tag
from tagrouter.tagging.taxonomy import TASK_TYPES

#: At most this many queries fit the tagger that finds the strata.
FIT_QUERIES = 2000


@dataclass(frozen=True)
class SampledQuery:
    query_id: str
    query: str
    stratum: str


def task_types(queries: Sequence[str], seed: int = 0) -> list[str]:
    """The task type (coarse tag) of each query, from the embedded tagger fitted on the queries."""
    from tagrouter.tagging.embedded import EmbeddedTagger

    fit_on = list(queries)
    if len(fit_on) > FIT_QUERIES:
        fit_on = random.Random(seed).sample(fit_on, FIT_QUERIES)
    tagger = EmbeddedTagger.fit(fit_on, min_count=1 if len(fit_on) < 200 else 2)
    types = {normalize_tag(t) for t in TASK_TYPES}
    strata = []
    for start in range(0, len(queries), 1024):
        for tags in tagger.tag(list(queries[start : start + 1024])):
            strata.append(next((t for t in tags if t in types), "other"))
    return strata


def stratified_sample(strata: Sequence[str], size: int, seed: int = 0) -> list[int]:
    """Indices of ``size`` items, taking the strata in turns (seeded order within and across strata)."""
    rng = random.Random(seed)
    groups: dict[str, list[int]] = {}
    for index, stratum in enumerate(strata):
        groups.setdefault(stratum, []).append(index)
    pools = [groups[name] for name in sorted(groups)]
    rng.shuffle(pools)
    for pool in pools:
        rng.shuffle(pool)
    chosen: list[int] = []
    while len(chosen) < min(size, len(strata)):
        for pool in pools:
            if pool and len(chosen) < size:
                chosen.append(pool.pop())
    return sorted(chosen)


def sample_queries(texts: Sequence[str], size: int | None, seed: int = 0) -> list[SampledQuery]:
    """A stratified sample of ``size`` of the distinct queries of ``texts``, in input order; all of them
    (no tagging, stratum ``""``) when ``size`` is None or not smaller than their number."""
    distinct = list(dict.fromkeys(t for t in texts if t.strip()))
    if size is None or size >= len(distinct):
        return [SampledQuery(query_id(q), q, "") for q in distinct]
    strata = task_types(distinct, seed)
    return [
        SampledQuery(query_id(distinct[i]), distinct[i], strata[i])
        for i in stratified_sample(strata, size, seed)
    ]
