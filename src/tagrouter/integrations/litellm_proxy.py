"""In a LiteLLM proxy: the answers of the model groups TagRouter routes name the model that answered.

LiteLLM's proxy writes the model group a client asked for (``tagrouter``) into the ``model`` field of
every answer. For a group that TagRouter routes, which model answered is the point, so :data:`answer_model`
is a proxy callback (``litellm_settings: {callbacks: ["tagrouter.integrations.litellm_proxy.answer_model"]}``)
that asks the proxy to keep the upstream's own model name for those groups. It sets the request metadata
flag that LiteLLM's own complexity router sets for the same purpose
(``litellm.constants.RETURN_RAW_MODEL_NAME_METADATA_KEY``); other groups are left alone.

The groups are those named in ``$TAGROUTER_MODEL_GROUPS`` (comma-separated; default ``tagrouter``).
This module imports ``litellm``: load it only inside a LiteLLM proxy.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import Any

from litellm.constants import RETURN_RAW_MODEL_NAME_METADATA_KEY
from litellm.integrations.custom_logger import CustomLogger

#: The variable naming the model groups whose answers keep the answering model's name.
GROUPS_ENV = "TAGROUTER_MODEL_GROUPS"


class AnsweringModelName(CustomLogger):
    """A proxy callback: answers to ``model_groups`` carry the answering model's name in ``model``."""

    def __init__(self, model_groups: Collection[str] | None = None) -> None:
        super().__init__()
        if model_groups is None:
            model_groups = [
                g.strip() for g in os.environ.get(GROUPS_ENV, "tagrouter").split(",") if g.strip()
            ]
        self.model_groups = frozenset(model_groups)

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict, call_type: Any
    ) -> dict:
        """Flag a request to one of the groups so that the proxy keeps the upstream's model name."""
        if data.get("model") in self.model_groups:
            key = "litellm_metadata" if "litellm_metadata" in data else "metadata"
            metadata = data.setdefault(key, {})
            if isinstance(metadata, dict):
                metadata[RETURN_RAW_MODEL_NAME_METADATA_KEY] = True
        return data


#: The callback a proxy config names.
answer_model = AnsweringModelName()
