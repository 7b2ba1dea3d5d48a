"""A scripted load for a gateway that serves the example router: stand-in upstreams, a stand-in judge for
shadow verdicts, and the example queries with the example history's verdicts as client feedback.

Used by the dashboard's browser test and by ``scripts/dashboard_screenshot.py``: everything runs on
loopback, in this process.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from threaded import ThreadedServer

from tagrouter.cli.demo import EXAMPLES
from tagrouter.records import read_history
from tagrouter.router import TagRouter
from tagrouter.server.app import create_app
from tagrouter.server.config import GatewayConfig
from tagrouter.testing.judge import create_judge_app, sure_beats_unsure
from tagrouter.testing.replay import ReplayBehaviour, create_replay_app

CLIENT_KEY = "sk-demo-client"
ADMIN_KEY = "sk-demo-admin"
#: The stand-ins' skills (see :func:`tagrouter.testing.replay.difficulty`) and answer delays in seconds.
STAND_INS = {"small-7b": (0, 0.005), "mid-70b": (1, 0.02), "large-api": (2, 0.06)}


@dataclass
class DemoGateway:
    """A gateway on loopback over the example router, with its stand-ins."""

    url: str
    router_dir: Path
    behaviours: dict[str, ReplayBehaviour]


@contextmanager
def demo_gateway(folder: Path, shadow_share: float = 0.25, **settings: Any) -> Iterator[DemoGateway]:
    """Fit the example router into ``folder/router`` and serve it with stand-in upstreams and judge, the
    client key :data:`CLIENT_KEY` and the admin key :data:`ADMIN_KEY`; ``settings`` override the config."""
    router_dir = folder / "router"
    TagRouter.fit(read_history(EXAMPLES / "history.jsonl"), _catalog()).save(router_dir)
    with ExitStack() as stack:
        behaviours = {name: ReplayBehaviour(delay_s=delay) for name, (_, delay) in STAND_INS.items()}
        upstreams = {
            name: stack.enter_context(
                ThreadedServer(create_replay_app(name, behaviour=b, skill=STAND_INS[name][0]))
            )
            for name, b in behaviours.items()
        }
        judge = stack.enter_context(ThreadedServer(create_judge_app(sure_beats_unsure)))
        config = GatewayConfig.model_validate(
            {
                "api_keys": [CLIENT_KEY],
                "admin_keys": [ADMIN_KEY],
                "feedback_db": folder / "feedback.sqlite3",
                "endpoints": {name: {"base_url": s.url + "/v1"} for name, s in upstreams.items()},
                "shadow": {
                    "share": shadow_share,
                    "reference": "large-api",
                    "judge": f"judge@{judge.url}/v1?input_usd_per_1m=0.15&output_usd_per_1m=0.6",
                },
                **settings,
            }
        )
        app = create_app(TagRouter.load(router_dir), config, router_dir=router_dir)
        gateway = stack.enter_context(ThreadedServer(app))
        yield DemoGateway(gateway.url, router_dir, behaviours)


def _catalog() -> Any:
    from tagrouter.catalog import load_catalog

    return load_catalog(EXAMPLES / "catalog.yaml")


def example_traffic(
    url: str, feedback_every: int = 2, pause_every: int = 0, pause_s: float = 0.0
) -> list[str]:
    """Send every example query once as a chat completion (in a seeded random order); for every ``feedback_every``-th answer, post
    the example history's verdict on the chosen model as client feedback; after every ``pause_every``
    queries wait ``pause_s`` (so that the dashboard's timeline has several points). Returns the chosen
    models."""
    verdicts = {(r.query, r.model): r.outcome for r in read_history(EXAMPLES / "history.jsonl")}
    queries = list(dict.fromkeys(query for query, _ in verdicts))
    random.Random(0).shuffle(queries)  # topics mixed, as live traffic is
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    chosen = []
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        for number, query in enumerate(queries):
            body = {"model": "tagrouter", "messages": [{"role": "user", "content": query}]}
            answer = client.post("/v1/chat/completions", json=body)
            answer.raise_for_status()
            model = answer.json()["model"]
            chosen.append(model)
            if number % feedback_every == 0:
                outcome = verdicts[(query, model)]
                client.post("/v1/feedback", json={"request_id": answer.json()["id"], "outcome": outcome})
            if pause_every and number % pause_every == pause_every - 1:
                time.sleep(pause_s)
    return chosen
