"""Hard constraints of routing: what one request needs of a model, and which models can take it.

A :class:`Needs` value describes one request (its prompt tokens, the output it asks for, its input
modalities, whether it calls tools or asks for JSON) and what its client allows (models to exclude, a
minimum model tier, a cost ceiling). :func:`allowed` turns a batch of them into a (queries × models) mask
and, per query, why each removed model was removed. The decider only chooses among allowed models, and the
ranking (the fallback order) holds allowed models only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tagrouter.catalog import Catalog, Modality, ModelCard
from tagrouter.errors import DataError

TEXT_ONLY = frozenset({Modality.TEXT})


class UnroutableError(DataError):
    """No model of the catalogue can take a request (the message says why each was removed)."""


@dataclass(frozen=True)
class Needs:
    """What one request needs of a model, and what its client allows (every field optional)."""

    input_tokens: int = 0
    max_output_tokens: int | None = None
    modalities: frozenset[Modality] = TEXT_ONLY
    tools: bool = False
    json_mode: bool = False
    #: models the client does not want
    exclude: frozenset[str] = field(default_factory=frozenset)
    #: only models at least as dear as this one (output price, then input price)
    min_model: str | None = None
    #: only models whose expected cost for this query is at most this many dollars
    max_cost_usd: float | None = None
    #: models at their rate limit now (the gateway's :mod:`~tagrouter.server.limits`)
    saturated: frozenset[str] = field(default_factory=frozenset)

    def check(self, catalog: Catalog) -> None:
        """Raise :class:`DataError` naming the field when a model it names is not in ``catalog``."""
        unknown = sorted(m for m in self.exclude if m not in catalog)
        if unknown:
            raise DataError(f"exclude: unknown model(s) {', '.join(unknown)}", field="exclude")
        if self.min_model is not None and self.min_model not in catalog:
            raise DataError(
                f"min_model: {self.min_model!r} is not in the catalogue ({', '.join(catalog.names)})",
                field="min_model",
            )

    def refusal(self, card: ModelCard, floor: tuple[float, float] | None) -> str | None:
        """Why ``card`` cannot take this request (None when it can), without the cost ceiling."""
        if card.name in self.exclude:
            return "excluded"
        if card.name in self.saturated:
            return "at its rate limit"
        if floor is not None and card.price_key < floor:
            return f"below min_model {self.min_model}"
        missing = sorted(self.modalities - set(card.modalities))
        if missing:
            return f"no {'/'.join(missing)} input"
        if self.tools and card.tools is False:
            return "no tool calls"
        if self.json_mode and card.json_mode is False:
            return "no JSON mode"
        wanted = self.max_output_tokens or 0
        if card.max_output_tokens is not None and wanted > card.max_output_tokens:
            return f"max output {card.max_output_tokens} < {wanted} tokens asked"
        if card.context_window is not None and self.input_tokens + wanted > card.context_window:
            return f"context window {card.context_window} < {self.input_tokens + wanted} tokens"
        return None


@dataclass(frozen=True)
class Allowed:
    """Which models each query may go to (``mask``, queries × models) and why the others may not."""

    mask: np.ndarray
    removed: list[dict[str, str]]

    @classmethod
    def stacked(cls, parts: Sequence[Allowed]) -> Allowed:
        """The rows of ``parts`` (each for some queries, over the same catalogue), one after another."""
        return cls(np.concatenate([p.mask for p in parts]), [r for p in parts for r in p.removed])


def allowed(catalog: Catalog, needs: Sequence[Needs], costs: np.ndarray | None) -> Allowed:
    """The models of ``catalog`` (in catalogue order) that can take each request; ``costs`` are the
    expected dollars per (query, model), needed only for a ``max_cost_usd``. A request that no model can
    take raises :class:`UnroutableError` listing why each model was removed."""
    cards = catalog.models
    mask = np.ones((len(needs), len(cards)), dtype=bool)
    removed: list[dict[str, str]] = []
    refusals: dict[Needs, dict[str, str]] = {}  # most requests of a batch share a few distinct needs
    for i, need in enumerate(needs):
        if need not in refusals:
            need.check(catalog)
            floor = catalog[need.min_model].price_key if need.min_model else None
            reasons = {c.name: why for c in cards if (why := need.refusal(c, floor)) is not None}
            refusals[need] = reasons
        reasons = dict(refusals[need])
        if need.max_cost_usd is not None:
            if costs is None:
                raise ValueError("a max_cost_usd needs the expected costs")
            for j, card in enumerate(cards):
                if card.name not in reasons and costs[i, j] > need.max_cost_usd:
                    reasons[card.name] = f"expected ${costs[i, j]:.6f} > max_cost_usd {need.max_cost_usd:g}"
        for j, card in enumerate(cards):
            mask[i, j] = card.name not in reasons
        if not mask[i].any():
            why = "; ".join(f"{name}: {reason}" for name, reason in reasons.items())
            raise UnroutableError(f"query {i + 1}: no model of the catalogue can take this request ({why})")
        removed.append(reasons)
    return Allowed(mask, removed)
