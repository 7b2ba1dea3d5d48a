"""Strict reading of request bodies: size, JSON syntax, finite numbers, nesting depth, types and text.

The rules (documented in docs/gateway.md, *Request validation*):

- a body over ``max_request_bytes`` is a 413 ``request_too_large``;
- the body is one JSON object; ``NaN``/``Infinity`` literals and numbers too large for a float are a 400
  ``invalid_json`` (nothing non-finite is ever passed upstream); nesting deeper than :data:`MAX_JSON_DEPTH`
  is a 400 ``too_deep``;
- the fields the gateway reads are strictly typed (``"stream": "yes"`` is a 400, not true; the chat body's
  model is :class:`tagrouter.chat.ChatRequest`, shared with the LiteLLM plugin), and every text
  field must be valid Unicode (a lone surrogate such as ``"\\ud800"`` is a 400 naming the field);
- routing text must hold at least one visible character (text of only whitespace, zero-width or control
  characters is a 400), and only its first and last ``max_routing_chars // 2`` characters are routed on.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field

from tagrouter.chat import Text
from tagrouter.server.errors import ApiError

#: The deepest nesting of arrays and objects accepted in a request body (the body object is depth 1).
MAX_JSON_DEPTH = 64


class RouteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: Text | None = Field(default=None, description="routing profile; default: the default profile")
    query: Text | None = Field(default=None, min_length=1)
    queries: list[Text] | None = Field(default=None, min_length=1)


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    outcome: Literal["win", "tie", "loss"]
    request_id: Text | None = Field(default=None, min_length=1, max_length=200)
    query: Text | None = Field(default=None, min_length=1)
    model: Text | None = Field(default=None, min_length=1, max_length=200)
    feedback_id: Text | None = Field(default=None, min_length=1, max_length=200)


class _NotFinite(ValueError):
    """A JSON number that is not finite (``NaN``, ``Infinity`` or too large for a float)."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(text[:40])
    return value


def _no_constant(name: str) -> float:
    raise _NotFinite(name)


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest deeper than ``limit`` in ``value`` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The request's JSON object, read up to ``limit`` bytes and checked as the module says."""
    too_large = ApiError(
        413, f"request body is larger than the limit of {limit} bytes", code="request_too_large"
    )
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    too_deep = ApiError(
        400, f"request body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels", code="too_deep"
    )
    try:
        body = json.loads(b"".join(chunks), parse_float=_finite_float, parse_constant=_no_constant)
    except _NotFinite as exc:
        raise ApiError(
            400, f"request body holds the number {exc}: JSON numbers must be finite", code="invalid_json"
        ) from None
    except RecursionError:
        raise too_deep from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"request body is not valid JSON ({exc})", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object", code="invalid_json")
    if _deeper_than(body, MAX_JSON_DEPTH):
        raise too_deep
    return body


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of an endpoint that reads ``model`` itself (definitions inlined), so
    that the schema documents, and fuzzers exercise, every body."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: inline(value) for key, value in node.items()}
        return [inline(value) for value in node] if isinstance(node, list) else node

    content = {"application/json": {"schema": inline(schema)}}
    return {"requestBody": {"required": True, "content": content}}
