"""TagScorer: a table of judged outcomes per (tag, model), and the scorers that turn it into per-model
scores for a query's tags.

The table holds, for every tag and model, how many history answers of that model to queries carrying that
tag were judged win, tie or loss. Counts only add up, so updating the table with new records gives exactly
the table of a refit on all records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, ClassVar, Literal

import numpy as np

from tagrouter.arrays import segment_sums
from tagrouter.records import OUTCOMES

WIN, TIE, LOSS = 0, 1, 2


@dataclass
class TagTable:
    """Counts ``counts[tag, model, outcome]`` (outcome order: win, tie, loss) plus per-model totals.

    ``model_counts[model, outcome]`` counts each record once (a record adds to every tag of its query), so
    model-level accept rates are not inflated by queries with many tags.
    """

    tags: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    counts: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 3)))
    model_counts: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))

    def __post_init__(self) -> None:
        self.tag_index = {t: i for i, t in enumerate(self.tags)}
        self.model_index = {m: i for i, m in enumerate(self.models)}

    def _grow(self, tags: Sequence[str], models: Sequence[str]) -> None:
        new_tags = [t for t in dict.fromkeys(tags) if t not in self.tag_index]
        new_models = [m for m in dict.fromkeys(models) if m not in self.model_index]
        if not new_tags and not new_models:
            return
        counts = np.zeros((len(self.tags) + len(new_tags), len(self.models) + len(new_models), 3))
        counts[: len(self.tags), : len(self.models)] = self.counts
        model_counts = np.zeros((len(self.models) + len(new_models), 3))
        model_counts[: len(self.models)] = self.model_counts
        self.tags += new_tags
        self.models += new_models
        self.counts, self.model_counts = counts, model_counts
        self.__post_init__()

    def add(self, tag_lists: Sequence[Sequence[str]], models: Sequence[str], outcomes: Sequence[str]) -> None:
        """Add one judged record per position: its query's tags, the model and the outcome."""
        if not (len(tag_lists) == len(models) == len(outcomes)):
            raise ValueError("tag_lists, models and outcomes must have the same length")
        self._grow([t for tags in tag_lists for t in tags], models)
        outcome_index = {name: i for i, name in enumerate(OUTCOMES)}
        m = np.fromiter((self.model_index[x] for x in models), dtype=np.intp, count=len(models))
        r = np.fromiter((outcome_index[x] for x in outcomes), dtype=np.intp, count=len(outcomes))
        np.add.at(self.model_counts, (m, r), 1)
        unique_tags = [dict.fromkeys(tags) for tags in tag_lists]  # a record counts once per tag
        rows = np.fromiter((self.tag_index[t] for tags in unique_tags for t in tags), dtype=np.intp)
        per_record = np.fromiter((len(tags) for tags in unique_tags), dtype=np.intp, count=len(unique_tags))
        np.add.at(self.counts, (rows, np.repeat(m, per_record), np.repeat(r, per_record)), 1)

    def tag_rows(self, tag_lists: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Row indices of each query's known tags (tags absent from the table are ignored)."""
        index = self.tag_index
        return [np.fromiter((index[t] for t in tags if t in index), dtype=np.intp) for tags in tag_lists]

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts, "model_counts": self.model_counts}

    def equals(self, other: TagTable) -> bool:
        """Same tags and models (in any order) with the same counts."""
        if set(self.tags) != set(other.tags) or set(self.models) != set(other.models):
            return False
        t = [other.tag_index[x] for x in self.tags]
        m = [other.model_index[x] for x in self.models]
        return bool(
            np.array_equal(self.counts, other.counts[np.ix_(t, m)])
            and np.array_equal(self.model_counts, other.model_counts[m])
        )


class TagScorer:
    """What every scorer shares: per (tag, model) values from the table (``tag_values``), and a query's
    scores as the mean (``averages``) or sum of its known tags' values."""

    averages: ClassVar[bool]

    def tag_values(self, table: TagTable) -> np.ndarray:
        raise NotImplementedError

    def empty_scores(self, table: TagTable) -> np.ndarray:
        raise NotImplementedError

    def score(self, table: TagTable, tag_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """Scores (queries × table models) of the queries carrying ``tag_lists``."""
        return aggregate(
            self.tag_values(table),
            table.tag_rows(tag_lists),
            mean=self.averages,
            empty=self.empty_scores(table),
        )


@dataclass(frozen=True)
class PaperScorer(TagScorer):
    """The paper's TagScorer: score(m, q) = Σ_{t ∈ tags(q)} w_t · Σ_r s_r · count[t, m, r].

    ``rewards`` = (s_win, s_tie, s_loss): the paper reports s_tie ≈ 0.15 best with s_win = 1 and does not
    give s_loss; we use -1 so that a model is not rewarded merely for having more history. Tag weights are
    uniform, or ``idf`` (log of the number of tags over the tag's share of records) to favour rare tags.
    """

    rewards: tuple[float, float, float] = (1.0, 0.15, -1.0)
    tag_weighting: Literal["uniform", "idf"] = "uniform"
    kind: str = "paper"
    averages: ClassVar[bool] = False

    def tag_values(self, table: TagTable) -> np.ndarray:
        """Per (tag, model) value Σ_r s_r · count[t, m, r], times the tag weight."""
        values = table.counts @ np.asarray(self.rewards, dtype=float)
        if self.tag_weighting == "idf":
            per_tag = table.counts.sum(axis=(1, 2))
            values = values * np.log1p(per_tag.sum() / np.maximum(per_tag, 1.0))[:, None]
        return values

    def empty_scores(self, table: TagTable) -> np.ndarray:
        """Scores of a query with no known tag: nothing to add up."""
        return np.zeros(len(table.models))

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "rewards": list(self.rewards), "tag_weighting": self.tag_weighting}


@dataclass(frozen=True)
class SmoothedScorer(TagScorer):
    """Estimated accept probability per model: per-tag accept rates shrunk toward a prior, combined in
    logit space.

    For tag t and model m with ``a`` accepted (win or tie) of ``n`` judged answers, the smoothed rate is
    p(t, m) = (a + k · prior(t, m)) / (n + k), k = ``prior_strength``. The prior is the model's overall
    accept rate p_m; with ``difficulty=True`` it is moved, in logit space, by d_t: how much easier or harder
    tag t is for *all* models in the history (one Newton step of a Rasch model, itself shrunk by
    ``difficulty_strength`` pseudo-observations). That uses the outcomes of every model in the history,
    including models that are not routable, as a query-difficulty signal. The tag's value for m is

        σ(logit p_m + α · d_t + β · (logit p(t, m) − logit prior(t, m)))

    with α = ``difficulty_weight`` (the shared difficulty signal) and β = ``specific_weight`` (the
    model-specific deviation, noisier: it rests on one model's answers only); α = β = 1 gives p(t, m)
    itself. With ``discrimination``, d_t is scaled per model by how strongly that model follows it
    (:meth:`discrimination_slopes`), in the prior and in the value. A query's score for m is the mean of its tags' values; a query with no known tag gets p_m.
    Defaults are the best measured on the AlpacaEval benchmark (docs/results.md).
    """

    prior_strength: float = 20.0
    difficulty: bool = True
    difficulty_strength: float = 10.0
    difficulty_weight: float = 2.0
    specific_weight: float = 0.5
    discrimination: bool = True
    kind: str = "smoothed"
    averages: ClassVar[bool] = True

    def model_prior(self, table: TagTable) -> np.ndarray:
        accepted = table.model_counts[:, WIN] + table.model_counts[:, TIE]
        return (accepted + 1.0) / (table.model_counts.sum(axis=1) + 2.0)

    def tag_values(self, table: TagTable) -> np.ndarray:
        p_model = self.model_prior(table)
        accepted = table.counts[:, :, WIN] + table.counts[:, :, TIE]
        judged = table.counts.sum(axis=2)
        shift = self.tag_difficulty(table, p_model) if self.difficulty else np.zeros(len(table.tags))
        base = _logit(p_model)[None, :]
        slope = self.discrimination_slopes(table, p_model, shift)
        prior = _sigmoid(base + slope[None, :] * shift[:, None])
        smoothed = (accepted + self.prior_strength * prior) / (judged + self.prior_strength)
        specific = _logit(smoothed) - _logit(prior)
        return _sigmoid(
            base + self.difficulty_weight * slope[None, :] * shift[:, None] + self.specific_weight * specific
        )

    def discrimination_slopes(self, table: TagTable, p_model: np.ndarray, shift: np.ndarray) -> np.ndarray:
        """Per model, how strongly its accept rate follows the tag difficulty (1 without ``discrimination``):
        the weighted least-squares slope of its smoothed per-tag logit deviation on d_t, pulled toward 1 by
        one unit of weight (a two-parameter IRT model's discrimination)."""
        if not self.discrimination or not self.difficulty:
            return np.ones(len(table.models))
        accepted = table.counts[:, :, WIN] + table.counts[:, :, TIE]
        judged = table.counts.sum(axis=2)
        base = _logit(p_model)[None, :]
        prior = _sigmoid(base + shift[:, None])
        deviation = _logit((accepted + self.prior_strength * prior) / (judged + self.prior_strength)) - base
        numerator = (judged * deviation * shift[:, None]).sum(axis=0) + 1.0
        return numerator / ((judged * shift[:, None] ** 2).sum(axis=0) + 1.0)

    def tag_difficulty(self, table: TagTable, p_model: np.ndarray) -> np.ndarray:
        """Logit shift per tag: Σ_m (a_tm − n_tm p_m) / (Σ_m n_tm p_m (1 − p_m) + strength)."""
        accepted = table.counts[:, :, WIN] + table.counts[:, :, TIE]
        judged = table.counts.sum(axis=2)
        residual = (accepted - judged * p_model).sum(axis=1)
        information = (judged * p_model * (1 - p_model)).sum(axis=1)
        return residual / (information + self.difficulty_strength)

    def empty_scores(self, table: TagTable) -> np.ndarray:
        """Scores of a query with no known tag: each model's overall accept rate."""
        return self.model_prior(table)

    def config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "prior_strength": self.prior_strength,
            "difficulty": self.difficulty,
            "difficulty_strength": self.difficulty_strength,
            "difficulty_weight": self.difficulty_weight,
            "specific_weight": self.specific_weight,
            "discrimination": self.discrimination,
        }


Scorer = PaperScorer | SmoothedScorer


def scorer_from_config(config: dict[str, Any]) -> Scorer:
    """Rebuild a scorer from :meth:`config` output."""
    config = dict(config)
    kind = config.pop("kind", "smoothed")
    if kind == "paper":
        return PaperScorer(
            rewards=tuple(config.get("rewards", (1.0, 0.15, -1.0))),
            tag_weighting=config.get("tag_weighting", "uniform"),
        )
    if kind == "smoothed":
        # routers saved before these options existed scored with α = β = 1 and no discrimination
        config.setdefault("difficulty_weight", 1.0)
        config.setdefault("specific_weight", 1.0)
        config.setdefault("discrimination", False)
        return SmoothedScorer(**config)
    raise ValueError(f"unknown scorer kind {kind!r}; expected 'paper' or 'smoothed'")


def aggregate(
    values: np.ndarray, rows: Sequence[Sequence[int]], *, mean: bool, empty: np.ndarray
) -> np.ndarray:
    """A query's scores from its tags' rows of ``values`` (tags × models): their mean (``mean=True``) or
    sum; a query with no known tag gets ``empty``. Used by the scorers and the router alike."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.intp, count=len(rows))
    flat = np.fromiter(chain.from_iterable(rows), dtype=np.intp, count=int(lengths.sum()))
    scores = segment_sums(values[flat], lengths)
    if mean:
        scores /= np.maximum(lengths, 1)[:, None]
    scores[lengths == 0] = empty
    return scores


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
