"""Issue 10: property-based fuzzing of every endpoint from the gateway's OpenAPI schema (schemathesis, bodies
that fit the schema and bodies that break it), raw junk bodies (hypothesis), and a fault matrix of the
upstreams. Bounded in time (a fixed number of examples, no deadline per example); the properties: never a
5xx, never a traceback, every error in the OpenAI shape."""

from __future__ import annotations

import json

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="the fuzz tests need schemathesis (the dev extra)")
httpx = pytest.importorskip("httpx", reason="the gateway tests need the server extra (httpx)")
openai = pytest.importorskip(
    "openai", reason="the gateway tests need the official openai client (the dev extra)"
)

import requests  # noqa: E402
from gateway_fixtures import KEY, client, closed_port_url, post, start_gateway  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from server_support import CODE_QUERY, GREETING_QUERY  # noqa: E402

POSTS = ["/v1/chat/completions", "/v1/route", "/v1/feedback"]
GETS = ["/v1/models", "/healthz", "/metrics"]
EXAMPLES = {"POST": 40, "GET": 5}
FUZZ = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def fuzzed(router_dir, _upstream_servers, tmp_path_factory):
    """One gateway for all fuzzing (healthy upstreams)."""
    for behaviour in _upstream_servers[1].values():
        behaviour.reset()
    server = start_gateway(router_dir, _upstream_servers[0], tmp_path_factory.mktemp("fuzz") / "fb.sqlite3")
    yield server
    server.stop()


def _check(status: int, text: str) -> None:
    assert status < 500, text[:500]
    assert "Traceback" not in text and 'File "' not in text, text[:500]
    if status >= 400 and text.startswith("{"):
        error = json.loads(text)["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]


@pytest.mark.parametrize(
    ("method", "path", "mode"),
    [("POST", p, m) for p in POSTS for m in ("positive", "negative")]
    + [("GET", p, "positive") for p in GETS],
)
def test_fuzz_every_endpoint_from_the_openapi_schema(fuzzed, method: str, path: str, mode: str) -> None:
    server, session = fuzzed, requests.Session()
    schema = schemathesis.openapi.from_dict(httpx.get(server.url + "/openapi.json").json())
    strategy = schema[path][method].as_strategy(generation_mode=schemathesis.GenerationMode(mode))

    @settings(FUZZ, max_examples=EXAMPLES[method])
    @given(case=strategy)
    def run(case) -> None:
        headers = {"authorization": f"Bearer {KEY}"}
        response = case.call(base_url=server.url, session=session, headers=headers, timeout=30)
        _check(response.status_code, response.text)

    run()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
#: near-misses of real bodies: the right keys with values of any type
NEAR_MISS = st.fixed_dictionaries(
    {},
    optional={
        "model": JSON | st.sampled_from(["tagrouter", "mid", "cheap"]),
        "messages": JSON | st.lists(st.fixed_dictionaries({"role": JSON | st.just("user"), "content": JSON})),
        "stream": JSON,
        "query": JSON,
        "queries": JSON,
        "outcome": JSON | st.sampled_from(["win", "loss"]),
        "request_id": JSON,
        "feedback_id": JSON,
    },
)
#: text of every kind: letters, digits, punctuation, spaces, control, zero-width and lone surrogates
TEXT = st.text(st.characters(categories=["L", "N", "P", "Zs", "Cc", "Cf", "Cs"]), max_size=40)
#: bodies that are nearly right for each endpoint, so that many get past validation
LIKELY = {
    "/v1/chat/completions": st.fixed_dictionaries(
        {
            "model": st.sampled_from(["tagrouter", "mid", "cheap"]),
            "messages": st.lists(
                st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "user"]), "content": TEXT}),
                min_size=1,
                max_size=3,
            ),
        },
        optional={"stream": st.booleans(), "temperature": st.floats(), "max_tokens": st.integers()},
    ),
    "/v1/route": st.fixed_dictionaries(
        {}, optional={"query": TEXT, "queries": st.lists(TEXT, max_size=3), "model": TEXT}
    ),
    "/v1/feedback": st.fixed_dictionaries(
        {
            "outcome": st.sampled_from(["win", "tie", "loss"]),
            "query": TEXT,
            "model": st.sampled_from(["mid", "x"]),
        },
        optional={"feedback_id": TEXT},
    ),
}
JUNK = (
    st.binary(max_size=200)
    | JSON.map(lambda v: json.dumps(v).encode())
    | NEAR_MISS.map(lambda v: json.dumps(v).encode())
    | st.sampled_from([b"[" * 50_000, b'{"a": NaN}', b'{"q": "\\ud800"}', b"\xff\xfe", b"{" * 3 + b"}" * 3])
)


@pytest.mark.parametrize("path", POSTS)
def test_fuzz_raw_junk_bodies(fuzzed, path: str) -> None:
    server = fuzzed

    @settings(FUZZ, max_examples=60)
    @given(body=JUNK | LIKELY[path].map(lambda v: json.dumps(v).encode()))
    def run(body: bytes) -> None:
        response = post(server, path, body)
        _check(response.status_code, response.text)

    run()


#: fault of the first choice (cheap, for greetings) -> the model the client should get its answer from
FAULTS = {
    "down": "mid",
    "slow": "mid",
    "http_500": "mid",
    "http_429": "mid",
    "stream_breaks_before_first_event": "mid",
    "junk_usage": "cheap",
    "non_json_200": "mid",
}


def _inject(fault: str, behaviour) -> dict:
    """Make ``behaviour`` (cheap's upstream) misbehave; returns gateway settings the fault needs."""
    if fault == "down":
        return {"endpoints": {"cheap": {"base_url": closed_port_url()}}}
    if fault == "slow":
        behaviour.delay_s = 2.0
        return {"upstream_timeout_s": 0.5}
    if fault.startswith("http_"):
        behaviour.fail_status = int(fault.removeprefix("http_"))
    elif fault == "stream_breaks_before_first_event":
        behaviour.break_stream_after = 0
    elif fault == "junk_usage":
        behaviour.usage = {"prompt_tokens": "abc", "completion_tokens": -5}
    elif fault == "non_json_200":
        behaviour.raw_body = b"upstream says hi"
    return {}


@pytest.mark.parametrize(
    "fault, stream",
    [(f, s) for f in FAULTS for s in (False, True) if s or f != "stream_breaks_before_first_event"],
)
def test_fault_matrix_every_fault_is_answered(gateway, upstreams, fault: str, stream: bool) -> None:
    server = gateway(**_inject(fault, upstreams[1]["cheap"]))
    messages = [{"role": "user", "content": GREETING_QUERY}]
    chat = client(server).chat.completions
    if stream:
        chunks = list(chat.create(model="tagrouter", messages=messages, stream=True))
        models = {c.model for c in chunks}
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        completion = chat.create(model="tagrouter", messages=messages)
        models, text = {completion.model}, completion.choices[0].message.content
    assert models == {FAULTS[fault]}
    assert text == "Hi Zoe, I am fine!"
    assert (
        client(server)
        .chat.completions.create(model="tagrouter", messages=[{"role": "user", "content": CODE_QUERY}])
        .model
        == "mid"
    )
