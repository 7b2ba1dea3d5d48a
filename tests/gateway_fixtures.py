"""Fixtures of the end-to-end gateway tests (a pytest plugin, loaded by conftest.py): the tiny router of
server_support saved once, three replaying upstreams on loopback (reset before each test), and a factory
that starts gateways on loopback. Helpers: ``client`` (the official openai client), ``ask``, ``post``."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
from server_support import CODE_QUERY, GREETING_QUERY, MODELS, UPSTREAM_IDS, save_router

ANSWERS = {
    CODE_QUERY: "def invert(d): return {v: k for k, v in d.items()}",
    GREETING_QUERY: "Hi Zoe, I am fine!",
}
KEY = "sk-test-client"


def closed_port_url() -> str:
    """The base URL of a loopback port where nothing listens."""
    from tagrouter.testing.loopback import free_port

    return f"http://127.0.0.1:{free_port()}/v1"


@pytest.fixture(scope="session")
def router_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_router(tmp_path_factory.mktemp("router") / "router")


@pytest.fixture(scope="session")
def _upstream_servers():
    from threaded import ThreadedServer

    from tagrouter.testing.replay import ReplayBehaviour, create_replay_app

    behaviours = {m: ReplayBehaviour() for m in MODELS}
    servers = {m: ThreadedServer(create_replay_app(m, ANSWERS, behaviours[m])).start() for m in MODELS}
    yield servers, behaviours
    for server in servers.values():
        server.stop()


@pytest.fixture
def upstreams(_upstream_servers):
    """``(servers, behaviours)`` by model, every behaviour reset to healthy."""
    for behaviour in _upstream_servers[1].values():
        behaviour.reset()
    return _upstream_servers


def start_gateway(router_dir: Path, servers: dict[str, Any], feedback_db: Path, **settings: Any) -> Any:
    """A gateway on loopback for the router in ``router_dir``, every model on its replay upstream in
    ``servers``, client key :data:`KEY`; ``settings`` override these defaults."""
    from threaded import ThreadedServer

    from tagrouter import TagRouter
    from tagrouter.server.app import create_app
    from tagrouter.server.config import GatewayConfig

    endpoints = {
        m: {"base_url": servers[m].url + "/v1", "model": UPSTREAM_IDS[m], "timeout_s": 5.0} for m in MODELS
    }
    endpoints.update(settings.pop("endpoints", {}))
    config = GatewayConfig.model_validate(
        {
            "endpoints": endpoints,
            "feedback_db": feedback_db,
            "api_keys": [KEY],
            "learning": {"exploration_budget": 0.0},  # deterministic choices; exploration has its own tests
            **settings,
        }
    )
    return ThreadedServer(create_app(TagRouter.load(router_dir), config)).start()


@pytest.fixture
def gateway(router_dir: Path, upstreams, tmp_path: Path):
    """``gateway(**settings)`` starts a gateway on loopback; settings override the test defaults."""
    started: list[Any] = []

    def start(**settings: Any) -> Any:
        server = start_gateway(router_dir, upstreams[0], tmp_path / "feedback.sqlite3", **settings)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def client(server: Any, key: str = KEY) -> Any:
    """The official openai client, pointed at ``server``."""
    import openai

    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=30)


def ask(server: Any, query: str, model: str = "tagrouter", **kwargs: Any) -> tuple[Any, Any]:
    """One chat completion: the raw response (headers) and the parsed completion."""
    raw = client(server).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": query}], **kwargs
    )
    return raw, raw.parse()


@cache
def _http() -> Any:
    import httpx

    return httpx.Client(timeout=30)  # one client: making one costs tens of milliseconds


def post(server: Any, path: str, body: bytes | dict[str, Any], **headers: str) -> Any:
    """A raw POST with the client key (httpx), ``body`` as bytes or as JSON."""
    content = body if isinstance(body, bytes) else None
    return _http().post(
        server.url + path,
        content=content,
        json=None if content is not None else body,
        headers={"authorization": f"Bearer {KEY}", "content-type": "application/json", **headers},
    )
