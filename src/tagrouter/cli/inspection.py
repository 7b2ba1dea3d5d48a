"""Explaining a fitted table: which tags each model is strong or weak on, compared with the other models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tagrouter.scoring import TIE, WIN, TagTable

#: A tag is listed for a model only when its strength is this many standard errors away from 0 (≈ 95%).
BEYOND_NOISE = 2.0


@dataclass(frozen=True)
class TagStrengths:
    """A model's overall accept rate and its best and worst tags as (tag, strength, answers)."""

    model: str
    overall: float
    strongest: list[tuple[str, float, int]]
    weakest: list[tuple[str, float, int]]


def tag_strengths(
    table: TagTable, models: Sequence[str], *, top: int = 5, min_support: int = 10
) -> list[TagStrengths]:
    """For each model, the ``top`` tags where it does best (worst) *compared with the other models*: its
    accept rate on the tag minus its overall rate, minus the same difference averaged over the other
    models judged on the tag (so a tag that is easy or hard for every model is nobody's strength). Only
    tags with at least ``min_support`` judged answers of that model, and whose strength is
    :data:`BEYOND_NOISE` standard errors from 0, are listed: where the data does not support a difference
    between the models, none is shown."""
    columns = [table.model_index[m] for m in models]
    counts = table.counts[:, columns]
    judged = counts.sum(axis=2)
    accepted = counts[:, :, WIN] + counts[:, :, TIE]
    totals = table.model_counts[columns]
    overall = (totals[:, WIN] + totals[:, TIE]) / np.maximum(totals.sum(axis=1), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(judged > 0, accepted / judged, np.nan)
        # the binomial variance of each rate, around the model's overall rate (defined for small counts too)
        variance = np.where(judged > 0, overall * (1 - overall) / judged, np.nan)
    lift = rate - overall[None, :]
    rows = []
    for j, model in enumerate(models):
        others = np.delete(np.arange(len(models)), j)
        seen = ~np.isnan(lift[:, others])
        k = seen.sum(axis=1)
        shared = np.where(k > 0, np.nansum(lift[:, others], axis=1) / np.maximum(k, 1), 0.0)
        shared_var = np.where(k > 0, np.nansum(variance[:, others], axis=1) / np.maximum(k, 1) ** 2, 0.0)
        strength = lift[:, j] - shared
        se = np.sqrt(variance[:, j] + shared_var)
        supported = np.flatnonzero((judged[:, j] >= min_support) & (np.abs(strength) >= BEYOND_NOISE * se))
        order = supported[np.argsort(-strength[supported], kind="stable")]
        described = [(table.tags[i], float(strength[i]), int(judged[i, j])) for i in order]
        rows.append(
            TagStrengths(
                model=model,
                overall=float(overall[j]),
                strongest=[d for d in described if d[1] > 0][:top],
                weakest=[d for d in described[::-1] if d[1] < 0][:top],
            )
        )
    return rows
