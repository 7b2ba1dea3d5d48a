"""One chat request, read once: :func:`read_chat_request` turns a body into a :class:`RoutingInput`.

The body is validated once (:class:`~tagrouter.chat.ChatRequest`), and everything routing reads of it is
computed from that, once: the text to route on, the earlier turns, the request's :class:`Needs` (with the
client's overrides), its session, the profile or model it asks for and whether it streams. To give the
gateway a new fact about a request, add a field to :class:`RoutingInput` and set it in
:func:`read_chat_request` (or, when the LiteLLM plugin needs it too, to :class:`~tagrouter.chat.ChatInput`
and :func:`~tagrouter.chat.read_chat`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from tagrouter.catalog import Catalog
from tagrouter.chat import ChatRequest, read_chat
from tagrouter.constraints import Needs
from tagrouter.errors import validated
from tagrouter.server.affinity import session_key
from tagrouter.server.config import GatewayConfig
from tagrouter.server.errors import ApiError
from tagrouter.server.overrides import Overrides, read_overrides
from tagrouter.server.profiles import ProfileSet


@dataclass(frozen=True)
class RoutingInput:
    """What the gateway reads of one chat request.

    Exactly one of ``profile`` (the routing profile that decides) and ``passthrough`` (the catalogue
    model the request names directly) is set. ``query`` is the capped text of the last user turn (None
    only for a passthrough request without visible text); ``needs`` are the messages' needs with the
    overrides' ``exclude``, ``min_model`` and ``max_cost_usd``; ``session`` the session key when
    affinity is on and the request is routed; ``body`` what goes upstream (the overrides taken out)."""

    body: dict[str, Any]
    profile: str | None
    passthrough: str | None
    query: str | None
    earlier: str | None
    needs: Needs
    session: str | None
    overrides: Overrides
    stream: bool


def read_chat_request(
    body: dict[str, Any],
    headers: Mapping[str, str],
    config: GatewayConfig,
    catalog: Catalog,
    profiles: ProfileSet,
) -> RoutingInput:
    """The routing input of a chat-completions ``body`` (taking the overrides out of it).

    A bad override raises :class:`~tagrouter.server.overrides.OverrideError` and a bad body
    :class:`~tagrouter.errors.DataError` (both name the field); a routed request without visible user
    text is a 400 and a model that is neither a profile nor in the catalogue a 404 (:class:`ApiError`)."""
    overrides = read_overrides(body, headers, catalog, profiles.names)
    chat = validated(ChatRequest, body)
    requested = overrides.profile or chat.model or profiles.default
    read = read_chat(chat, config.max_routing_chars)
    routed = requested in profiles
    session = None
    if routed:
        if read.query is None:
            raise ApiError(
                400, "messages: the last user message must carry visible text to route on", param="messages"
            )
        if config.affinity.enabled:
            key = session_key(headers, chat)
            session = key if key is None or key.startswith("id:") or config.affinity.by_opening else None
    elif requested not in catalog:
        raise ApiError(
            404,
            f"model {requested!r} is neither a routing profile ({', '.join(profiles.names)}) "
            f"nor a catalogue model ({', '.join(catalog.names)})",
            param="model",
            code="model_not_found",
        )
    return RoutingInput(
        body=body,
        profile=requested if routed else None,
        passthrough=None if routed else requested,
        query=read.query,
        earlier=read.earlier,
        needs=replace(
            read.needs,
            exclude=overrides.exclude,
            min_model=overrides.min_model,
            max_cost_usd=overrides.max_cost_usd,
        ),
        session=session,
        overrides=overrides,
        stream=chat.stream,
    )
