"""The model catalogue: each routable model's prices, capabilities and, optionally, its endpoint.

Capabilities are optional and are hard constraints of routing (:mod:`tagrouter.constraints`): a model whose
card says it cannot take a request is never chosen for it, nor used as its fallback. An absent
``context_window`` or ``max_output_tokens`` is not checked; ``modalities`` defaults to text only; ``tools``
and ``json_mode`` absent (None) mean "not declared": not checked (the upstream decides).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tagrouter.errors import DataError, from_validation_error
from tagrouter.fileio import atomic_write_text, read_yaml_mapping


class Endpoint(BaseModel):
    """Where a model is served: an OpenAI-compatible base URL, the upstream model id and the key's env var."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(min_length=1, description="e.g. https://api.openai.com/v1")
    model: str | None = Field(default=None, description="upstream model id; defaults to the card's name")
    api_key_env: str | None = Field(default=None, description="name of the environment variable with the key")
    timeout_s: float = Field(default=60.0, gt=0)


class Modality(StrEnum):
    """Kinds of input a request can carry."""

    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"


class RateLimits(BaseModel):
    """A model's upstream limits; the gateway stops routing to a model that has reached one this minute."""

    model_config = ConfigDict(extra="forbid")

    requests_per_minute: int | None = Field(default=None, gt=0)
    tokens_per_minute: int | None = Field(default=None, gt=0, description="input tokens (estimated)")


class ModelCard(BaseModel):
    """A model that the router may choose: its name, prices in US dollars per 1M tokens, what it can take
    (optional; see the module docstring), and endpoint."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    input_usd_per_1m: float = Field(ge=0)
    output_usd_per_1m: float = Field(ge=0)
    context_window: int | None = Field(default=None, gt=0, description="prompt + output tokens")
    max_output_tokens: int | None = Field(default=None, gt=0)
    modalities: list[Modality] = Field(default_factory=lambda: [Modality.TEXT], min_length=1)
    tools: bool | None = Field(default=None, description="takes tool (function) calls; None: not declared")
    json_mode: bool | None = Field(default=None, description="takes response_format; None: not declared")
    rate_limits: RateLimits | None = None
    endpoint: Endpoint | None = None

    def cost(self, input_tokens: float, output_tokens: float) -> float:
        """Dollar cost of one answer with the given token counts."""
        return (input_tokens * self.input_usd_per_1m + output_tokens * self.output_usd_per_1m) / 1e6

    @property
    def price_key(self) -> tuple[float, float]:
        """How dear the model is, for tiers and the default reference model: output, then input price."""
        return self.output_usd_per_1m, self.input_usd_per_1m


class Catalog(BaseModel):
    """The pool of models a router chooses from."""

    model_config = ConfigDict(extra="forbid")

    models: list[ModelCard] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> Catalog:
        names = [m.name for m in self.models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"model names must be unique; repeated: {', '.join(duplicates)}")
        return self

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    def __getitem__(self, name: str) -> ModelCard:
        for card in self.models:
            if card.name == name:
                return card
        raise KeyError(f"model {name!r} is not in the catalogue (known: {', '.join(self.names)})")

    def __contains__(self, name: object) -> bool:
        return any(card.name == name for card in self.models)

    def to_yaml(self) -> str:
        return yaml.safe_dump(
            self.model_dump(mode="json", exclude_none=True), sort_keys=False, allow_unicode=True
        )

    def save(self, path: str | Path) -> None:
        """Write the catalogue as YAML, atomically."""
        atomic_write_text(path, self.to_yaml())


def load_catalog(path: str | Path) -> Catalog:
    """Read and validate a YAML catalogue; errors name the file and the field at fault."""
    raw = read_yaml_mapping(path, "catalogue")
    if "models" not in raw:
        raise DataError("expected a mapping with a 'models' list", path=path, field="models")
    try:
        return Catalog.model_validate(raw)
    except ValidationError as exc:
        raise from_validation_error(exc, path=path, rows_of="models") from None
