"""Any OpenAI-compatible chat endpoint as a tagging backend: vLLM serving the TagGenerator, or a general LLM
with a tagging prompt.

Requests run ``concurrency`` at a time, each with a ``timeout``, through :mod:`tagrouter.completions` (the
client and retry policy that ``tagrouter collect`` uses too): a request that times out, cannot connect or
gets HTTP 429 or 5xx is retried up to ``retries`` times with exponential backoff (``backoff`` seconds,
doubling, at most 30 s, or the server's ``Retry-After``). Other HTTP errors fail at once. Failures raise
:class:`~tagrouter.tagging.backends.chat.BackendError` naming the URL and the status. Needs ``httpx`` and
``tenacity`` (the ``openai`` extra).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tagrouter.completions import ChatCall, CompletionError, RetryPolicy, request_body, require_http
from tagrouter.tagging.backends.chat import BackendError, chat_messages


@dataclass
class OpenAIChatGenerator:
    """Generates tag answers with ``model`` at ``base_url`` (e.g. ``http://localhost:8000/v1``).

    The API key is read from the environment variable ``api_key_env`` at each call; when it is unset no
    ``Authorization`` header is sent (a local vLLM needs none). ``prompt`` is ``general`` (a JSON tag list
    asked of an instruction LLM) or ``taggenerator`` (the TagGenerator's own prompt).
    """

    model: str
    base_url: str
    api_key_env: str = "OPENAI_API_KEY"
    prompt: str = "general"
    concurrency: int = 8
    timeout: float = 60.0
    retries: int = 4
    backoff: float = 1.0
    max_new_tokens: int = 128
    _client: Any = field(default=None, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        chat_messages("", self.prompt)  # validates the prompt style
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base URL {self.base_url!r} must start with http:// or https://")
        if self.concurrency < 1 or self.retries < 0 or self.timeout <= 0 or self.max_new_tokens < 1:
            raise ValueError("concurrency and max_new_tokens must be ≥ 1, retries ≥ 0 and timeout > 0")

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def generate(self, queries: Sequence[str]) -> list[str]:
        if not queries:
            return []
        client = self._http()
        if len(queries) == 1:
            return [self._complete(client, queries[0])]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(queries))) as pool:
            futures = [pool.submit(self._complete, client, q) for q in queries]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    def _http(self) -> Any:
        """One connection pool per generator (kept alive across calls), of ``concurrency`` connections."""
        try:
            httpx = require_http("the openai tagger")
        except CompletionError as exc:
            raise BackendError(str(exc)) from None
        with self._lock:
            if self._client is None:
                limits = httpx.Limits(
                    max_connections=self.concurrency, max_keepalive_connections=self.concurrency
                )
                self._client = httpx.Client(timeout=self.timeout, limits=limits)
            return self._client

    def _complete(self, client: Any, query: str) -> str:
        body = request_body(
            self.model, chat_messages(query, self.prompt), max_tokens=self.max_new_tokens, temperature=0
        )
        call = ChatCall(
            self.url, body, self.api_key_env, self.timeout, RetryPolicy(self.retries, self.backoff)
        )
        try:
            reply = call.send(client)
        except CompletionError as exc:
            raise BackendError(str(exc)) from None
        return reply.text


__all__ = ["OpenAIChatGenerator"]
