"""Explaining a fitted table: which tags each model is strong or weak on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tagrouter.scoring import TIE, WIN, TagTable


@dataclass(frozen=True)
class TagStrengths:
    """A model's overall accept rate and its best and worst tags as (tag, rate − overall, answers)."""

    model: str
    overall: float
    strongest: list[tuple[str, float, int]]
    weakest: list[tuple[str, float, int]]


def tag_strengths(
    table: TagTable, models: Sequence[str], *, top: int = 5, min_support: int = 10
) -> list[TagStrengths]:
    """For each model, the ``top`` tags where its accept rate most exceeds (or falls short of) its overall
    rate, among tags with at least ``min_support`` judged answers of that model."""
    rows = []
    for model in models:
        m = table.model_index[model]
        totals = table.model_counts[m]
        overall = float((totals[WIN] + totals[TIE]) / max(totals.sum(), 1.0))
        judged = table.counts[:, m].sum(axis=1)
        accepted = table.counts[:, m, WIN] + table.counts[:, m, TIE]
        supported = np.flatnonzero(judged >= min_support)
        delta = accepted[supported] / judged[supported] - overall
        order = supported[np.argsort(-delta, kind="stable")]
        by_tag = dict(zip(supported.tolist(), delta.tolist(), strict=True))
        described = [(table.tags[i], by_tag[i], int(judged[i])) for i in order]
        strongest = described[:top]
        weakest = described[::-1][:top]
        rows.append(TagStrengths(model=model, overall=overall, strongest=strongest, weakest=weakest))
    return rows
