"""The OpenAI-compatible backend against a local fake chat server on loopback: answers, bounded
concurrency, retries, timeouts, server errors; then ``vocab build`` and ``fit --tagger openai:...`` end to
end through the CLI, with the teacher cache making a rerun free."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import Counter

import pytest

pytest.importorskip("httpx", reason="the openai extra (httpx) is not installed")
fastapi = pytest.importorskip("fastapi", reason="the server extra (fastapi, uvicorn) runs the fake endpoint")
uvicorn = pytest.importorskip("uvicorn", reason="the server extra (fastapi, uvicorn) runs the fake endpoint")

from conftest import fit_example  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from tagrouter.cli import app  # noqa: E402
from tagrouter.cli.demo import EXAMPLES  # noqa: E402
from tagrouter.records import read_history  # noqa: E402
from tagrouter.router import TagRouter  # noqa: E402
from tagrouter.tagging.backends.chat import TAGGENERATOR_PROMPT, BackendError  # noqa: E402
from tagrouter.tagging.backends.generative import GenerativeTagger  # noqa: E402
from tagrouter.tagging.backends.openai_chat import OpenAIChatGenerator  # noqa: E402


def scripted_answer(query: str) -> str:
    """What the fake LLM answers: tags from keywords of the query, in a numbered list."""
    words = [w.strip(".,?!").lower() for w in query.split()]
    tags = [w for w in words if len(w) > 5][:3] or ["general"]
    topic = "coding" if any(w in words for w in ("python", "code", "function", "sql")) else "writing"
    return "\n".join(f"{i}. {t}" for i, t in enumerate([topic, *tags], start=1))


class FakeChat:
    """State of the fake server: calls per query, requests in flight, failures still to serve."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.ports: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.flaky_failures = 0
        self.gate = 3
        self.lock = threading.Lock()

    def build(self):
        api = fastapi.FastAPI()

        async def answer(request: fastapi.Request, delay: float = 0.0, hold_until: int = 0) -> dict:
            body = await request.json()
            query = body["messages"][-1]["content"]
            with self.lock:
                self.calls[query] += 1
                self.bodies.append(body)
                self.headers.append(dict(request.headers))
                self.ports.append(request.client.port)
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                deadline = time.monotonic() + 5.0
                while self.max_in_flight < hold_until and time.monotonic() < deadline:
                    await asyncio.sleep(0.005)
                await asyncio.sleep(delay)
            finally:
                with self.lock:
                    self.in_flight -= 1
            return {
                "id": "x",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": scripted_answer(query)}}
                ],
            }

        @api.post("/v1/chat/completions")
        async def ok(request: fastapi.Request):
            return await answer(request, delay=0.02)

        @api.post("/gate/v1/chat/completions")
        async def gate(request: fastapi.Request):
            """Hold each request until ``gate`` requests are in flight together (or 5 s pass), then answer
            after a pause in which any request beyond the bound would arrive too."""
            return await answer(request, delay=0.05, hold_until=self.gate)

        @api.post("/slow/v1/chat/completions")
        async def slow(request: fastapi.Request):
            return await answer(request, delay=3.0)

        @api.post("/fail/v1/chat/completions")
        async def fail(request: fastapi.Request):
            with self.lock:
                self.calls["<fail>"] += 1
            return fastapi.responses.JSONResponse({"error": "model crashed"}, status_code=500)

        @api.post("/flaky/v1/chat/completions")
        async def flaky(request: fastapi.Request):
            with self.lock:
                failing = self.flaky_failures > 0
                self.flaky_failures -= 1
            if failing:
                return fastapi.responses.JSONResponse(
                    {"error": "busy"}, status_code=429, headers={"Retry-After": "0"}
                )
            return await answer(request)

        @api.post("/auth/v1/chat/completions")
        async def auth(request: fastapi.Request):
            if request.headers.get("authorization") != "Bearer s3cret":
                return fastapi.responses.JSONResponse({"error": "bad key"}, status_code=401)
            return await answer(request)

        @api.post("/garbled/v1/chat/completions")
        async def garbled(request: fastapi.Request):
            return {"result": "not a chat completion"}

        return api


@pytest.fixture(scope="module")
def server():
    chat = FakeChat()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(chat.build(), log_level="error", lifespan="off")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if instance.started:
            break
        time.sleep(0.01)
    chat.url = f"http://127.0.0.1:{port}"
    yield chat
    instance.should_exit = True
    thread.join(timeout=5)
    sock.close()


def test_answers_come_back_in_order_with_bounded_concurrency(server):
    """Nine queries at concurrency 3: the gate endpoint holds requests until three are in flight, so the
    bound must be reached exactly. Bugs caught: calls run one at a time (the peak is 1) or unbounded (the
    peak passes 3)."""
    queries = [f"Explain recursion example number{i} clearly" for i in range(9)]
    generator = OpenAIChatGenerator("m", f"{server.url}/gate/v1", concurrency=3, prompt="taggenerator")
    server.max_in_flight = 0
    answers = generator.generate(queries)
    assert answers == [scripted_answer(TAGGENERATOR_PROMPT.format(query=q)) for q in queries]
    assert server.max_in_flight == 3
    body = server.bodies[-1]
    assert body["model"] == "m" and body["temperature"] == 0 and body["max_tokens"] == 128
    assert [m["role"] for m in body["messages"]] == ["user"]  # the TagGenerator prompt: one user turn


def test_connections_are_kept_alive_across_calls(server):
    generator = OpenAIChatGenerator("m", f"{server.url}/v1")
    generator.generate(["first question"])
    generator.generate(["second question"])
    assert server.ports[-1] == server.ports[-2]  # one connection, reused


def test_general_prompt_and_tagger(server):
    tagger = GenerativeTagger(OpenAIChatGenerator("m", f"{server.url}/v1"), "openai:m@x")
    assert tagger.tag(["Write a python function"]) == [["coding", "python", "function"]]
    assert [m["role"] for m in server.bodies[-1]["messages"]] == ["system", "user"]


def test_server_error_is_retried_then_reported_with_url_and_status(server):
    generator = OpenAIChatGenerator("m", f"{server.url}/fail/v1", retries=2, backoff=0.01)
    before = server.calls["<fail>"]
    with pytest.raises(BackendError, match=r"/fail/v1/chat/completions failed after 3 attempts: HTTP 500"):
        generator.generate(["hello"])
    assert server.calls["<fail>"] - before == 3


def test_timeouts_are_retried_then_reported(server):
    generator = OpenAIChatGenerator("m", f"{server.url}/slow/v1", timeout=0.2, retries=1, backoff=0.01)
    with pytest.raises(BackendError, match=r"failed after 2 attempts: no answer within 0.2 s"):
        generator.generate(["a slow question"])


def test_rate_limits_are_retried_until_success(server):
    server.flaky_failures = 2
    generator = OpenAIChatGenerator("m", f"{server.url}/flaky/v1", retries=3, backoff=0.01)
    assert generator.generate(["Summarise this article"]) == [scripted_answer("Summarise this article")]
    assert server.flaky_failures < 0


def test_client_errors_fail_at_once_with_a_hint(server, monkeypatch):
    monkeypatch.delenv("TAGGER_KEY", raising=False)
    generator = OpenAIChatGenerator("m", f"{server.url}/auth/v1", api_key_env="TAGGER_KEY", retries=3)
    with pytest.raises(BackendError, match=r"HTTP 401.*check the API key in \$TAGGER_KEY"):
        generator.generate(["hello there"])
    monkeypatch.setenv("TAGGER_KEY", "s3cret")
    assert generator.generate(["hello there"]) == [scripted_answer("hello there")]
    with pytest.raises(BackendError, match="not an OpenAI chat completion"):
        OpenAIChatGenerator("m", f"{server.url}/garbled/v1").generate(["hello"])


def test_unreachable_endpoint_is_reported():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    generator = OpenAIChatGenerator("m", f"http://127.0.0.1:{port}/v1", retries=1, backoff=0.01)
    with pytest.raises(BackendError, match="failed after 2 attempts: connection failed"):
        generator.generate(["hello"])


def test_sync_and_async_calls_share_one_retry_policy_and_one_error_mapping(server, monkeypatch):
    """The tagger's sync calls and collect's async calls (tagrouter.completions) retry the same statuses
    and fail with the same messages."""
    import httpx

    from tagrouter.completions import ChatCall, CompletionError, RetryPolicy, request_body

    monkeypatch.delenv("TAGGER_KEY", raising=False)
    policy = RetryPolicy(retries=2, backoff_s=0.01)
    body = request_body("m", [{"role": "user", "content": "Summarise this article"}], max_tokens=8)

    def both(path: str) -> list[object]:
        url, results = f"{server.url}{path}", []
        call = ChatCall(url, body, "TAGGER_KEY", 5.0, policy)
        server.flaky_failures = 2
        with httpx.Client() as client:
            try:
                results.append(call.send(client))
            except CompletionError as exc:
                results.append((str(exc), exc.status))

        async def call_async() -> object:
            async with httpx.AsyncClient() as client:
                try:
                    return await call.asend(client)
                except CompletionError as exc:
                    return (str(exc), exc.status)

        server.flaky_failures = 2
        results.append(asyncio.run(call_async()))
        return results

    calls = server.calls["<fail>"]
    for path, expected in [
        ("/flaky/v1/chat/completions", scripted_answer("Summarise this article")),  # two 429s, then 200
        ("/fail/v1/chat/completions", "failed after 3 attempts: HTTP 500"),
        ("/auth/v1/chat/completions", 'HTTP 401: {"error":"bad key"} (check the API key in $TAGGER_KEY)'),
        ("/garbled/v1/chat/completions", "not an OpenAI chat completion"),
    ]:
        sync, async_ = both(path)
        assert sync == async_
        text = sync.text if hasattr(sync, "text") else sync[0]
        assert expected in text
    assert server.calls["<fail>"] - calls == 6  # three attempts each way


# ---- through the CLI --------------------------------------------------------------------------------------
runner = CliRunner()


def test_vocab_build_with_an_openai_teacher_caches_every_query(server, tmp_path):
    history = str(EXAMPLES / "history.jsonl")
    queries = {r.query for r in read_history(EXAMPLES / "history.jsonl")}
    teacher = f"openai:teacher@{server.url}/v1?concurrency=4"
    args = ["vocab", "build", history, "--teacher", teacher, "--out", str(tmp_path / "v"), "--min-count", "2"]
    first = runner.invoke(app, [*args, "--student"])
    assert first.exit_code == 0, first.output
    assert f"{len(queries)} tagged by the teacher, 0 from the cache" in first.output
    assert all(server.calls[q] >= 1 for q in queries)
    calls = sum(server.calls.values())
    args[args.index(teacher)] = teacher.replace("concurrency=4", "concurrency=2&timeout=30")  # same answers
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert f"0 tagged by the teacher, {len(queries)} from the cache" in again.output
    assert sum(server.calls.values()) == calls  # the rerun cost nothing
    vocabulary = json.loads((tmp_path / "v" / "vocabulary.json").read_text())
    assert {"coding", "writing"} <= set(vocabulary["tags"])
    fitted = fit_example(tmp_path / "r", "--tagger", f"embedded:{tmp_path / 'v' / 'student'}")
    assert fitted.exit_code == 0, fitted.output
    assert sum(server.calls.values()) == calls  # the student tags offline


def test_fit_with_an_openai_tagger_saves_and_routes(server, tmp_path):
    spec = f"openai:tagger@{server.url}/v1?min_count=2&cutoff=0.6"
    result = fit_example(tmp_path / "r", "--tagger", spec)
    assert result.exit_code == 0, result.output
    router = TagRouter.load(tmp_path / "r")
    assert isinstance(router.tagger, GenerativeTagger)
    assert router.tagger.spec == f"openai:tagger@{server.url}/v1" and router.tagger.cutoff == 0.6
    query = "Write a python function that parses dates"
    decision = router.route(query)
    assert server.calls[query] == 1
    assert "coding" in decision.tags and set(decision.tags) <= set(router.tagger.vocabulary.tags)
