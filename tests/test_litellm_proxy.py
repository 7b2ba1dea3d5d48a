"""The README's LiteLLM proxy example, run with the real proxy (``litellm --config litellm.yaml``).

The config is read out of README.md (only the three ``api_base`` URLs are pointed at replay upstreams on
loopback), the router is the one fitted on the shipped example history, and the master key is made as the
README makes it. The proxy must start, route to more than one model, and name the answering model in each
answer (streamed or not).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("litellm", reason="the LiteLLM proxy test needs 'pip install tagrouter[litellm]'")
for _module in ("apscheduler", "backoff", "websockets"):  # what litellm[proxy] adds
    pytest.importorskip(_module, reason="the LiteLLM proxy test needs pip install 'litellm[proxy]'")
httpx = pytest.importorskip("httpx")

from conftest import fit_example  # noqa: E402
from threaded import ThreadedServer  # noqa: E402

from tagrouter.testing.loopback import free_port  # noqa: E402
from tagrouter.testing.replay import create_replay_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
UPSTREAMS = {  # the README's api_base of each catalogue model
    "small-7b": "http://vllm-small:8000/v1",
    "mid-70b": "http://vllm-mid:8000/v1",
    "large-api": "https://api.example.com/v1",
}


def readme_config() -> str:
    """The README's ``litellm.yaml``, as written."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"```yaml\n(# litellm\.yaml.*?)```", readme, re.DOTALL)
    assert found, "the README lost its litellm.yaml"
    return found.group(1)


def test_the_readme_proxy_config_starts_routes_and_names_the_answering_model(tmp_path: Path) -> None:
    assert fit_example(tmp_path / "router").exit_code == 0
    servers = {name: ThreadedServer(create_replay_app(name)).start() for name in UPSTREAMS}
    config = readme_config()
    for name, url in UPSTREAMS.items():
        assert url in config
        config = config.replace(url, servers[name].url + "/v1")
    (tmp_path / "litellm.yaml").write_text(config, encoding="utf-8")
    master = "sk-" + secrets.token_hex(32)  # as the README's `openssl rand -hex 32`
    port = free_port()
    env = {
        **os.environ,
        "TAGROUTER_ROUTER": str(tmp_path / "router"),
        "LITELLM_MASTER_KEY": master,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "VLLM_KEY": "unused",
        "API_KEY": "unused",
    }
    proxy = subprocess.Popen(
        [sys.executable, "-c", "from litellm.proxy.proxy_cli import run_server; run_server()",
         "--config", "litellm.yaml", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                if httpx.get(url + "/health/liveliness").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proxy.poll() is None and time.monotonic() < deadline, proxy.stdout.read()
            time.sleep(0.5)
        headers = {"authorization": f"Bearer {master}"}
        named = {}
        for query in ("Hi! How are you today?", "Prove that there are infinitely many primes."):
            body = {"model": "tagrouter", "messages": [{"role": "user", "content": query}]}
            answer = httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=60).json()
            served = answer["choices"][0]["message"]["content"].split("]")[0].lstrip("[")
            assert answer["model"] == served, answer  # the model that answered, not "tagrouter"
            named[query] = served
        assert len(set(named.values())) == 2, named
        body = {
            "model": "tagrouter",
            "stream": True,
            "messages": [{"role": "user", "content": "Hi! How are you today?"}],
        }
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, headers=headers, timeout=60) as s:
            chunks = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: {")]
        assert chunks and {c["model"] for c in chunks} == {named["Hi! How are you today?"]}
        refused = httpx.post(
            url + "/v1/chat/completions", json=body, headers={"authorization": "Bearer sk-x"}
        )
        assert refused.status_code in (400, 401)  # the master key is required
    finally:
        os.killpg(proxy.pid, signal.SIGTERM)
        proxy.communicate(timeout=60)
        for server in servers.values():
            server.stop()
