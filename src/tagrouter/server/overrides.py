"""Per-request overrides of routing: a profile, a cost ceiling, a model floor and models to exclude.

A client sends them as headers or in the body's ``tagrouter`` object (``extra_body={"tagrouter": {...}}``
with the OpenAI client); the body wins over a header for the same field. The ``tagrouter`` object is
removed before the request goes upstream.

| body (``tagrouter.``) | header | value |
|---|---|---|
| ``profile`` | ``x-tagrouter-profile`` | a routing profile |
| ``max_cost_usd`` | ``x-tagrouter-max-cost-usd`` | only models whose expected cost is at most this |
| ``min_model`` | ``x-tagrouter-min-model`` | only models at least as dear as this catalogue model |
| ``exclude`` | ``x-tagrouter-exclude`` | catalogue models never to use (a list; comma-separated in the header) |
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tagrouter.catalog import Catalog
from tagrouter.errors import DataError, from_validation_error

#: The body field that carries overrides.
BODY_FIELD = "tagrouter"
#: header -> field
HEADERS = {
    "x-tagrouter-profile": "profile",
    "x-tagrouter-max-cost-usd": "max_cost_usd",
    "x-tagrouter-min-model": "min_model",
    "x-tagrouter-exclude": "exclude",
}


class OverrideError(DataError):
    """A bad override (malformed, or naming a profile or model that does not exist); ``field`` names it."""


class Overrides(BaseModel):
    """The overrides of one request (all optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: str | None = Field(default=None, min_length=1)
    max_cost_usd: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    min_model: str | None = Field(default=None, min_length=1)
    exclude: frozenset[str] = frozenset()

    def echo(self) -> dict[str, str]:
        """The overrides in effect, as response headers."""
        headers = {}
        if self.max_cost_usd is not None:
            headers["x-tagrouter-max-cost-usd"] = f"{self.max_cost_usd:g}"
        if self.min_model is not None:
            headers["x-tagrouter-min-model"] = self.min_model
        if self.exclude:
            headers["x-tagrouter-exclude"] = ",".join(sorted(self.exclude))
        return headers


def read_overrides(
    body: dict[str, Any], headers: Mapping[str, str], catalog: Catalog, profiles: Collection[str]
) -> Overrides:
    """The request's overrides, taking the ``tagrouter`` object out of ``body``; a bad one raises
    :class:`OverrideError` naming the field (``tagrouter.max_cost_usd``, or the header it came from)."""
    sent: dict[str, Any] = {}
    for header, name in HEADERS.items():
        value = headers.get(header)
        if value is not None:
            sent[name] = [m.strip() for m in value.split(",") if m.strip()] if name == "exclude" else value
    from_body = body.pop(BODY_FIELD, None)
    if from_body is not None and not isinstance(from_body, dict):
        raise OverrideError("expected an object of overrides", field=BODY_FIELD)
    from_body = from_body or {}

    def where(name: str) -> str:
        header = next((h for h, f in HEADERS.items() if f == name), None)
        return (
            header if header is not None and name.split(".")[0] not in from_body else f"{BODY_FIELD}.{name}"
        )

    try:
        overrides = Overrides.model_validate({**sent, **from_body})
    except ValidationError as exc:
        raise from_validation_error(exc, rename=where, error=OverrideError) from None
    if overrides.profile is not None and overrides.profile not in profiles:
        message = f"unknown routing profile {overrides.profile!r} (profiles: {', '.join(profiles)})"
        raise OverrideError(message, field=where("profile"))
    unknown = sorted(m for m in overrides.exclude if m not in catalog)
    if unknown:
        raise OverrideError(f"unknown model(s) {', '.join(unknown)}", field=where("exclude"))
    if overrides.min_model is not None and overrides.min_model not in catalog:
        message = f"{overrides.min_model!r} is not in the catalogue ({', '.join(catalog.names)})"
        raise OverrideError(message, field=where("min_model"))
    return overrides
