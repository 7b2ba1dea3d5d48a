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

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


def read_overrides(body: dict[str, Any], headers: Mapping[str, str]) -> Overrides:
    """The request's overrides, taking the ``tagrouter`` object out of ``body``; a bad one raises
    :class:`DataError` naming the field (``tagrouter.max_cost_usd``, or the header)."""
    sent: dict[str, Any] = {}
    for header, name in HEADERS.items():
        value = headers.get(header)
        if value is not None:
            sent[name] = [m.strip() for m in value.split(",") if m.strip()] if name == "exclude" else value
    from_body = body.pop(BODY_FIELD, None)
    if from_body is not None and not isinstance(from_body, dict):
        raise DataError("expected an object of overrides", field=BODY_FIELD)
    try:
        return Overrides.model_validate({**sent, **(from_body or {})})
    except ValidationError as exc:
        error = from_validation_error(exc)
        name = error.field or ""
        header = next((h for h, f in HEADERS.items() if f == name), None)
        in_body = from_body is not None and name.split(".")[0] in from_body
        where = f"{BODY_FIELD}.{name}" if in_body or header is None else header
        raise DataError(error.reason, field=where) from None
