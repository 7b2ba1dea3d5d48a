"""TagScorer: a table of judged outcomes per (tag, model), and the scorers that turn it into per-model
scores for a query's tags.

The table holds, for every tag and model, how many history answers of that model to queries carrying that
tag were judged win, tie or loss. Counts only add up, so updating the table with new records gives exactly
the table of a refit on all records.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import chain
from typing import Any, ClassVar, Literal

import numpy as np

from tagrouter.arrays import RowBlocks, segment_sums
from tagrouter.errors import DataError
from tagrouter.records import OUTCOMES

WIN, TIE, LOSS = 0, 1, 2


class TagTable:
    """Counts ``counts[tag, model, outcome]`` (outcome order: win, tie, loss) plus per-model totals.

    ``model_counts[model, outcome]`` counts each record once (a record adds to every tag of its query), so
    model-level accept rates are not inflated by queries with many tags.

    A table is immutable: :meth:`added` returns a new table that shares the blocks of rows it does not
    touch with this one (see :class:`~tagrouter.arrays.RowBlocks`), so learning a few records costs in
    proportion to their tags, not to the table. Tables are sums: :meth:`merged` adds two tables aligned by
    tag and model name, in any order, to the same result.
    """

    def __init__(
        self,
        tags: Sequence[str] = (),
        models: Sequence[str] = (),
        counts: np.ndarray | RowBlocks | None = None,
        model_counts: np.ndarray | None = None,
    ) -> None:
        self.tags: tuple[str, ...] = tuple(tags)
        self.models: tuple[str, ...] = tuple(models)
        if counts is None:
            counts = np.zeros((len(self.tags), len(self.models), len(OUTCOMES)))
        self.blocks = counts if isinstance(counts, RowBlocks) else RowBlocks.from_array(counts)
        self.model_counts = (
            np.zeros((len(self.models), len(OUTCOMES)))
            if model_counts is None
            else np.asarray(model_counts, float)
        )
        if self.blocks.n_rows != len(self.tags) or self.blocks.row_shape != (len(self.models), len(OUTCOMES)):
            raise ValueError(
                f"counts of shape {(self.blocks.n_rows, *self.blocks.row_shape)} do not match "
                f"{len(self.tags)} tags × {len(self.models)} models × {len(OUTCOMES)} outcomes"
            )
        if self.model_counts.shape != (len(self.models), len(OUTCOMES)):
            raise ValueError(f"model_counts must have shape {(len(self.models), len(OUTCOMES))}")
        self.tag_index = {t: i for i, t in enumerate(self.tags)}
        self.model_index = {m: i for i, m in enumerate(self.models)}
        if len(self.tag_index) != len(self.tags) or len(self.model_index) != len(self.models):
            raise ValueError("tag and model names must be unique")

    def _with_counts(self, blocks: RowBlocks, model_counts: np.ndarray) -> TagTable:
        """This table's tags and models (and their indexes, shared) with other counts."""
        table = object.__new__(TagTable)
        table.tags, table.models, table.tag_index, table.model_index = (
            self.tags,
            self.models,
            self.tag_index,
            self.model_index,
        )
        table.blocks, table.model_counts = blocks, model_counts
        return table

    @property
    def counts(self) -> np.ndarray:
        """The whole (tags × models × 3) count array (a fresh copy)."""
        return self.blocks.to_array()

    @property
    def records(self) -> int:
        """Number of records counted (weighted records count their weight, rounded down)."""
        return int(self.model_counts.sum())

    @classmethod
    def count(
        cls,
        tag_lists: Sequence[Sequence[str]],
        models: Sequence[str],
        outcomes: Sequence[str] | np.ndarray,
        weights: Sequence[float] | np.ndarray | None = None,
    ) -> TagTable:
        """The table of one judged record per position: its query's tags, the model and the outcome (a name
        of :data:`~tagrouter.records.OUTCOMES` or its code 0 win, 1 tie, 2 loss); ``weights`` (one per
        record, default 1) count a record as that many (fractional counts, e.g. inverse-propensity; a
        negative weight takes back a record counted before)."""
        return cls().added(tag_lists, models, outcomes, weights)

    def added(
        self,
        tag_lists: Sequence[Sequence[str]],
        models: Sequence[str],
        outcomes: Sequence[str] | np.ndarray,
        weights: Sequence[float] | np.ndarray | None = None,
    ) -> TagTable:
        """This table plus one judged record per position, each counted ``weights[i]`` times (default once;
        see :meth:`count`)."""
        if not (len(tag_lists) == len(models) == len(outcomes)):
            raise ValueError("tag_lists, models and outcomes must have the same length")
        if weights is not None:
            weights = np.asarray(weights, dtype=float)
            if weights.shape != (len(models),) or not np.isfinite(weights).all():
                raise ValueError("weights must be one finite number per record")
        grown = self._grown([t for tags in tag_lists for t in tags], models)
        m = np.fromiter((grown.model_index[x] for x in models), dtype=np.intp, count=len(models))
        r = outcome_codes(outcomes)
        model_counts = grown.model_counts.copy()
        np.add.at(model_counts, (m, r), 1 if weights is None else weights)
        unique_tags = [dict.fromkeys(tags) for tags in tag_lists]  # a record counts once per tag
        rows = np.fromiter((grown.tag_index[t] for tags in unique_tags for t in tags), dtype=np.intp)
        per_record = np.fromiter((len(tags) for tags in unique_tags), dtype=np.intp, count=len(unique_tags))
        touched, inverse = np.unique(rows, return_inverse=True)
        delta = np.zeros((len(touched), len(grown.models), len(OUTCOMES)))
        counted = 1 if weights is None else np.repeat(weights, per_record)
        np.add.at(delta, (inverse, np.repeat(m, per_record), np.repeat(r, per_record)), counted)
        return grown._with_counts(grown.blocks.with_rows(touched, delta, add=True), model_counts)

    def merged(self, other: TagTable) -> TagTable:
        """The sum of two tables, aligned by tag and model name (the union of both)."""
        grown = self._grown(other.tags, other.models)
        rows = np.fromiter((grown.tag_index[t] for t in other.tags), dtype=np.intp, count=len(other.tags))
        columns = [grown.model_index[m] for m in other.models]
        delta = np.zeros((len(rows), len(grown.models), len(OUTCOMES)))
        delta[:, columns] = other.counts
        model_counts = grown.model_counts.copy()
        model_counts[columns] += other.model_counts
        blocks = grown.blocks.with_rows(rows, delta, add=True) if len(rows) else grown.blocks
        return grown._with_counts(blocks, model_counts)

    def with_models(self, models: Iterable[str]) -> TagTable:
        """This table with a column of zero counts for each of ``models`` it does not have yet."""
        return self._grown((), models)

    def _grown(self, tags: Iterable[str], models: Iterable[str]) -> TagTable:
        """This table with rows for new ``tags`` and columns for new ``models`` (zero counts). New tags cost
        a copy of the tag list; a new model (rare) rebuilds the count blocks."""
        new_tags = [t for t in dict.fromkeys(tags) if t not in self.tag_index]
        new_models = [m for m in dict.fromkeys(models) if m not in self.model_index]
        if not new_tags and not new_models:
            return self
        blocks = self.blocks
        if new_models:
            widened = np.zeros((len(self.tags), len(self.models) + len(new_models), len(OUTCOMES)))
            widened[:, : len(self.models)] = self.counts
            blocks = RowBlocks.from_array(widened)
        if new_tags:
            rows = np.arange(len(self.tags), len(self.tags) + len(new_tags))
            blocks = blocks.with_rows(rows, np.zeros((len(rows), *blocks.row_shape)))
        model_counts = np.zeros((len(self.models) + len(new_models), len(OUTCOMES)))
        model_counts[: len(self.models)] = self.model_counts
        return TagTable((*self.tags, *new_tags), (*self.models, *new_models), blocks, model_counts)

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """Counts (len(rows) × models × 3) of the tag rows ``rows``."""
        return self.blocks.gather(rows)

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


def outcome_codes(outcomes: Sequence[str] | np.ndarray) -> np.ndarray:
    """Outcome codes (0 win, 1 tie, 2 loss) of outcome names or codes."""
    if isinstance(outcomes, np.ndarray) and outcomes.dtype.kind in "iu":
        return outcomes.astype(np.intp)
    code = {name: i for i, name in enumerate(OUTCOMES)}
    return np.fromiter((code[x] for x in outcomes), dtype=np.intp, count=len(outcomes))


class TagScorer:
    """What every scorer shares.

    A scorer turns the table into a value per (tag, model) in two steps: :meth:`table_stats` computes the
    few table-wide quantities the values depend on (per-model rates, …), and :meth:`row_values` computes the
    values of some tag rows from their counts and those statistics. A tag's value therefore depends on its
    own row and the statistics only, so a routing model can recompute just the rows that new records touch.
    A query's score is the mean (``averages``) or sum of its known tags' values; a query with no known tag
    gets :meth:`empty_scores`.
    """

    averages: ClassVar[bool]

    def table_stats(self, table: TagTable) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def row_values(self, counts: np.ndarray, stats: dict[str, np.ndarray]) -> np.ndarray:
        """Values (rows × models) of tag rows with ``counts`` (rows × models × 3)."""
        raise NotImplementedError

    def empty_scores(self, stats: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    def tag_values(self, table: TagTable) -> np.ndarray:
        """Values (tags × table models) of every tag of ``table``."""
        return self.row_values(table.counts, self.table_stats(table))

    def score(self, table: TagTable, tag_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """Scores (queries × table models) of the queries carrying ``tag_lists``."""
        stats = self.table_stats(table)
        return aggregate(
            self.row_values(table.counts, stats),
            table.tag_rows(tag_lists),
            mean=self.averages,
            empty=self.empty_scores(stats),
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

    def __post_init__(self) -> None:
        if self.tag_weighting not in ("uniform", "idf"):
            raise DataError(f"unknown tag weighting {self.tag_weighting!r}; expected 'uniform' or 'idf'")

    def table_stats(self, table: TagTable) -> dict[str, np.ndarray]:
        """The number of (tag, record) pairs, for idf weights; the number of models."""
        return {"tag_records": np.array(table.counts.sum()), "models": np.zeros(len(table.models))}

    def row_values(self, counts: np.ndarray, stats: dict[str, np.ndarray]) -> np.ndarray:
        """Per (tag, model) value Σ_r s_r · count[t, m, r], times the tag weight."""
        values = counts @ np.asarray(self.rewards, dtype=float)
        if self.tag_weighting == "idf":
            per_tag = counts.sum(axis=(1, 2))
            values = values * np.log1p(float(stats["tag_records"]) / np.maximum(per_tag, 1.0))[:, None]
        return values

    def empty_scores(self, stats: dict[str, np.ndarray]) -> np.ndarray:
        """Scores of a query with no known tag: nothing to add up."""
        return np.zeros(len(stats["models"]))

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
    itself, α = β = 0 gives p_m for every tag (the router then behaves like the best single model for the
    cost). With ``discrimination``, d_t is scaled per model by how strongly that model follows it
    (:meth:`discrimination_slopes`), in the prior and in the value. A query's score for m is the mean of its
    tags' values; a query with no known tag gets p_m.
    """

    prior_strength: float = 20.0
    difficulty: bool = True
    difficulty_strength: float = 10.0
    difficulty_weight: float = 2.0
    specific_weight: float = 0.5
    discrimination: bool = True
    kind: str = "smoothed"
    averages: ClassVar[bool] = True

    def __post_init__(self) -> None:
        for name in ("prior_strength", "difficulty_strength"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise DataError(f"{name} must be a positive number, got {value!r}")
        for name in ("difficulty_weight", "specific_weight"):
            if not np.isfinite(getattr(self, name)):
                raise DataError(f"{name} must be a finite number, got {getattr(self, name)!r}")

    def model_prior(self, model_counts: np.ndarray) -> np.ndarray:
        """Each model's overall accept rate, with one pseudo-accept and one pseudo-loss."""
        accepted = model_counts[:, WIN] + model_counts[:, TIE]
        return (accepted + 1.0) / (model_counts.sum(axis=1) + 2.0)

    def table_stats(self, table: TagTable) -> dict[str, np.ndarray]:
        """Per model: the overall accept rate ``p_model`` and the discrimination ``slope``."""
        p_model = self.model_prior(table.model_counts)
        counts = table.counts
        slope = self.discrimination_slopes(counts, p_model, self.tag_difficulty(counts, p_model))
        return {"p_model": p_model, "slope": slope}

    def row_values(self, counts: np.ndarray, stats: dict[str, np.ndarray]) -> np.ndarray:
        p_model, slope = stats["p_model"], stats["slope"]
        accepted = counts[:, :, WIN] + counts[:, :, TIE]
        judged = counts.sum(axis=2)
        shift = self.tag_difficulty(counts, p_model)
        base = _logit(p_model)[None, :]
        prior = _sigmoid(base + slope[None, :] * shift[:, None])
        smoothed = (accepted + self.prior_strength * prior) / (judged + self.prior_strength)
        specific = _logit(smoothed) - _logit(prior)
        return _sigmoid(
            base + self.difficulty_weight * slope[None, :] * shift[:, None] + self.specific_weight * specific
        )

    def sample_values(
        self,
        counts: np.ndarray,
        model_counts: np.ndarray,
        stats: dict[str, np.ndarray],
        rng: np.random.Generator,
        draws: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``draws`` samples from the posterior of the values of tag rows with ``counts`` (rows × models
        × 3), and of the model rates (the scores of a query with no known tag): arrays (draws × rows ×
        models) and (draws × models).

        The smoothed rate of :meth:`row_values` is the mean of a Beta posterior (``prior_strength``
        pseudo-observations at the prior); a draw samples each model's overall rate from its Beta(accepted
        + 1, lost + 1), moves the prior with it, samples each tag's rate from its Beta, and puts both
        through the same formula. The tag difficulty (shared by every model) stays at its estimate."""
        accepted_m = model_counts[:, WIN] + model_counts[:, TIE]
        p_model = rng.beta(accepted_m + 1.0, model_counts[:, LOSS] + 1.0, size=(draws, len(accepted_m)))
        slope = stats["slope"]
        shift = self.tag_difficulty(counts, stats["p_model"])
        base = _logit(p_model)[:, None, :]
        tilt = slope[None, None, :] * shift[None, :, None]
        prior = _sigmoid(base + tilt)
        accepted = counts[:, :, WIN] + counts[:, :, TIE]
        lost = counts[:, :, LOSS]
        rate = rng.beta(
            accepted[None] + self.prior_strength * prior, lost[None] + self.prior_strength * (1 - prior)
        )
        values = _sigmoid(
            base + self.difficulty_weight * tilt + self.specific_weight * (_logit(rate) - _logit(prior))
        )
        return values, p_model

    def discrimination_slopes(self, counts: np.ndarray, p_model: np.ndarray, shift: np.ndarray) -> np.ndarray:
        """Per model, how strongly its accept rate follows the tag difficulty (1 without ``discrimination``):
        the weighted least-squares slope of its smoothed per-tag logit deviation on d_t, pulled toward 1 by
        one unit of weight (a two-parameter IRT model's discrimination)."""
        if not self.discrimination or not self.difficulty:
            return np.ones(len(p_model))
        accepted = counts[:, :, WIN] + counts[:, :, TIE]
        judged = counts.sum(axis=2)
        base = _logit(p_model)[None, :]
        prior = _sigmoid(base + shift[:, None])
        deviation = _logit((accepted + self.prior_strength * prior) / (judged + self.prior_strength)) - base
        numerator = (judged * deviation * shift[:, None]).sum(axis=0) + 1.0
        return numerator / ((judged * shift[:, None] ** 2).sum(axis=0) + 1.0)

    def tag_difficulty(self, counts: np.ndarray, p_model: np.ndarray) -> np.ndarray:
        """Logit shift per tag row (0 without ``difficulty``):
        Σ_m (a_tm − n_tm p_m) / (Σ_m n_tm p_m (1 − p_m) + strength)."""
        if not self.difficulty:
            return np.zeros(len(counts))
        accepted = counts[:, :, WIN] + counts[:, :, TIE]
        judged = counts.sum(axis=2)
        residual = (accepted - judged * p_model).sum(axis=1)
        information = (judged * p_model * (1 - p_model)).sum(axis=1)
        return residual / (information + self.difficulty_strength)

    def empty_scores(self, stats: dict[str, np.ndarray]) -> np.ndarray:
        """Scores of a query with no known tag: each model's overall accept rate."""
        return stats["p_model"]

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


class ScorerKind(StrEnum):
    """The scorers by name (``--scorer`` of ``tagrouter fit``)."""

    SMOOTHED = "smoothed"
    PAPER = "paper"


def scorer_from_config(config: dict[str, Any]) -> Scorer:
    """Rebuild a scorer from :meth:`config` output (``{"kind": "paper"}`` alone gives that scorer's
    defaults); an unknown kind or setting raises :class:`DataError`."""
    config = dict(config)
    kind = config.pop("kind", ScorerKind.SMOOTHED)
    try:
        if kind == ScorerKind.PAPER:
            if "rewards" in config:
                config["rewards"] = tuple(config["rewards"])
            return PaperScorer(**config)
        if kind == ScorerKind.SMOOTHED:
            return SmoothedScorer(**config)
    except TypeError as exc:
        raise DataError(f"bad {kind} scorer settings: {exc}") from None
    raise DataError(f"unknown scorer kind {kind!r}; expected one of {', '.join(ScorerKind)}")


def aggregate(
    values: np.ndarray, rows: Sequence[Sequence[int]], *, mean: bool, empty: np.ndarray
) -> np.ndarray:
    """A query's scores from its tags' rows of ``values`` (tags × models): see :func:`combine`."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.intp, count=len(rows))
    flat = np.fromiter(chain.from_iterable(rows), dtype=np.intp, count=int(lengths.sum()))
    return combine(values[flat], lengths, mean=mean, empty=empty)


def combine(tag_values: np.ndarray, lengths: np.ndarray, *, mean: bool, empty: np.ndarray) -> np.ndarray:
    """Scores of queries whose tags' values are consecutive runs of ``tag_values`` (query i: the next
    ``lengths[i]`` rows): their mean (``mean=True``) or sum; a query with no known tag gets ``empty``."""
    scores = segment_sums(tag_values, lengths)
    if mean:
        scores /= np.maximum(lengths, 1)[:, None]
    scores[lengths == 0] = empty
    return scores


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
