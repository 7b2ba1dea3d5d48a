"""Reloads that change the catalogue, and what a reload keeps: a new model joins a running gateway (a
version written by ``tagrouter models``) with no restart and no collection; a version the config does not
fit is refused; feedback is learned exactly once across a reload; the exploration spend and a client key's
feedback window carry over."""

from __future__ import annotations

import asyncio
import threading
from functools import partial
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from gateway_fixtures import KEY  # noqa: E402
from server_support import CODE, GREETINGS, UPSTREAM_IDS, catalog, history  # noqa: E402
from test_server_reload import ADMIN, wait_for  # noqa: E402
from threaded import ThreadedServer  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from tagrouter import Catalog, Decider, SmoothedScorer, TagRouter  # noqa: E402
from tagrouter.catalog import load_catalog  # noqa: E402
from tagrouter.cli import app as cli  # noqa: E402
from tagrouter.live import Judged  # noqa: E402
from tagrouter.server.app import create_app  # noqa: E402
from tagrouter.server.config import GatewayConfig  # noqa: E402
from tagrouter.server.feedback import Feedback, FeedbackStore, FeedbackWriter  # noqa: E402
from tagrouter.server.follow import FeedbackFollower  # noqa: E402
from tagrouter.server.limits import ModelLimits  # noqa: E402
from tagrouter.server.profiles import ProfileSet  # noqa: E402
from tagrouter.server.reload import Live, ServedRouter, current_version, stored_feedback  # noqa: E402
from tagrouter.server.stores import open_feedback_store  # noqa: E402
from tagrouter.server.upstream import Upstreams  # noqa: E402
from tagrouter.tagging.embedded import EmbeddedTagger  # noqa: E402
from tagrouter.testing.replay import ReplayBehaviour, create_replay_app  # noqa: E402

TWO = ("cheap", "mid")


def two_model_router(cards: Catalog | None = None) -> TagRouter:
    """``cheap`` and ``mid`` of the shared synthetic history (over ``cards``): code goes to mid, greetings
    to cheap."""
    tagger = EmbeddedTagger.fit(CODE + GREETINGS, min_count=1)
    cards = cards or Catalog(models=[c for c in catalog().models if c.name in TWO])
    records = [r for r in history() if r.model in TWO]
    router = TagRouter.fit(records, cards, tagger=tagger, scorer=SmoothedScorer(prior_strength=2))
    return router.with_decider(Decider("within", 0.3))


def chat(client: httpx.Client, query: str) -> httpx.Response:
    return client.post(
        "/v1/chat/completions", json={"model": "tagrouter", "messages": [{"role": "user", "content": query}]}
    )


def write_catalogue(path: Path, models: dict[str, tuple[float, float, str]]) -> Path:
    """A catalogue YAML: name -> (input price, output price, upstream base URL)."""
    lines = ["models:"]
    for name, (price_in, price_out, url) in models.items():
        lines += [
            f"- name: {name}",
            f"  input_usd_per_1m: {price_in}",
            f"  output_usd_per_1m: {price_out}",
            f"  endpoint: {{base_url: '{url}', model: {UPSTREAM_IDS.get(name, name)}}}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def models_command(router_dir: Path, cards: Path) -> None:
    result = CliRunner().invoke(cli, ["models", str(router_dir), "--catalog", str(cards)])
    assert result.exit_code == 0, result.output


def test_a_new_model_joins_a_running_gateway_and_a_version_the_config_does_not_fit_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    router_dir = tmp_path / "router"
    behaviours = {m: ReplayBehaviour() for m in (*TWO, "newbie")}
    servers = {m: ThreadedServer(create_replay_app(m, None, b)).start() for m, b in behaviours.items()}
    try:
        url = {m: s.url + "/v1" for m, s in servers.items()}
        cards = {"cheap": (0.1, 0.2, url["cheap"]), "mid": (1.0, 2.0, "http://127.0.0.1:9/v1")}
        two_model_router(load_catalog(write_catalogue(tmp_path / "c1.yaml", cards))).save(router_dir)
        first = current_version(router_dir)
        config = GatewayConfig.model_validate(
            {
                "api_keys": [KEY],
                "admin_keys": [ADMIN],
                "feedback_db": tmp_path / "feedback.sqlite3",
                "endpoints": {"mid": {"base_url": url["mid"]}},  # cheap and newbie: their catalogue cards'
                "reload_interval_s": 0.05,
            }
        )
        gateway = ThreadedServer(
            create_app(TagRouter.load(router_dir), config, router_dir=router_dir)
        ).start()
        parts = gateway.server.config.app.state.gateway.parts
        try:
            client = httpx.Client(
                base_url=gateway.url, headers={"authorization": f"Bearer {KEY}"}, timeout=30
            )
            admin = httpx.Client(
                base_url=gateway.url, headers={"authorization": f"Bearer {ADMIN}"}, timeout=30
            )
            seen: list[tuple[int, str, str, str, str]] = []
            stop = threading.Event()

            def load() -> None:
                with httpx.Client(
                    base_url=gateway.url, headers={"authorization": f"Bearer {KEY}"}, timeout=30
                ) as c:
                    for number in range(3000):  # bounded; stops once the test has seen enough
                        if stop.is_set():
                            return
                        query = f"Hello Zed number {number}, how are you today?"
                        answer = chat(c, query)
                        content = (
                            answer.json()["choices"][0]["message"]["content"]
                            if answer.status_code == 200
                            else ""
                        )
                        seen.append(
                            (
                                answer.status_code,
                                answer.headers.get("x-tagrouter-router-version", ""),
                                answer.headers.get("x-tagrouter-model", ""),
                                answer.headers.get("x-tagrouter-explored", ""),
                                content,
                            )
                        )

            thread = threading.Thread(target=load)
            thread.start()
            wait_for(lambda: len(seen) >= 10)
            cards["newbie"] = (0.01, 0.02, url["newbie"])  # no history; cheaper than cheap
            models_command(router_dir, write_catalogue(tmp_path / "c3.yaml", cards))
            third = current_version(router_dir)
            wait_for(lambda: sum(v == third and m == "newbie" for _, v, m, _, _ in seen) >= 3)  # no restart
            stop.set()
            thread.join(60)

            assert [s for s in seen if s[0] != 200] == []  # no request failed across the switch
            assert {v for _, v, _, _, _ in seen} == {first, third}
            assert all(m != "newbie" for _, v, m, _, _ in seen if v != third)
            newbie = [s for s in seen if s[2] == "newbie"]
            assert all(explored == "true" for _, _, _, explored, _ in newbie)  # found by exploration
            assert all(content.startswith("[newbie]") for _, _, _, _, content in newbie)  # its own upstream
            assert all(content.startswith(f"[{m}]") for _, _, m, _, content in seen)

            before = newbie_counts(parts)
            asked = next(  # exploration sends it the next greetings now and then
                a
                for a in (chat(client, GREETINGS[i % 20]) for i in range(500))
                if a.headers["x-tagrouter-model"] == "newbie"
            )
            sent = client.post("/v1/feedback", json={"request_id": asked.json()["id"], "outcome": "win"})
            assert sent.status_code == 200, sent.text
            wait_for(
                lambda: newbie_counts(parts) == pytest.approx(before + 1)
            )  # feedback on the new model is learned

            # a version without mid: the config's endpoints override names mid, so it is refused
            models_command(
                router_dir, write_catalogue(tmp_path / "c4.yaml", {k: cards[k] for k in ("cheap", "newbie")})
            )
            fourth = current_version(router_dir)
            wait_for(lambda: 'tagrouter_reloads_total{result="failed"} 1.0' in admin.get("/metrics").text)
            refused = admin.post("/admin/reload")
            assert refused.status_code == 409
            message = refused.json()["error"]["message"]
            assert f"version {fourth} (models cheap, newbie) does not fit the gateway config" in message
            assert "mid not in the router's catalogue" in message
            logged = [r.getMessage() for r in caplog.records if "router reload failed" in r.getMessage()]
            assert logged and all(f"still serving {third}: " in line and fourth in line for line in logged)
            assert not [r for r in caplog.records if r.exc_info]  # a refusal is one line, not a traceback
            assert chat(client, CODE[0]).headers["x-tagrouter-router-version"] == third
            assert parts.served.version == third

            # a version that drops cheap (which the config does not name) is served: cheap gets nothing more
            models_command(
                router_dir, write_catalogue(tmp_path / "c5.yaml", {k: cards[k] for k in ("mid", "newbie")})
            )
            fifth = current_version(router_dir)
            wait_for(lambda: parts.served.version == fifth)  # the watcher serves it
            calls = behaviours["cheap"].calls
            answers = [chat(client, q) for q in GREETINGS[:5]]
            assert {a.status_code for a in answers} == {200}
            assert {a.headers["x-tagrouter-model"] for a in answers} <= {"mid", "newbie"}
            assert behaviours["cheap"].calls == calls
            assert client.get("/v1/models").json()["data"][-2:] == [
                {"id": "mid", "object": "model", "created": 0, "owned_by": "upstream"},
                {"id": "newbie", "object": "model", "created": 0, "owned_by": "upstream"},
            ]
        finally:
            gateway.stop()
    finally:
        for server in servers.values():
            server.stop()


def newbie_counts(parts) -> float:
    """The judged outcomes the served table holds for ``newbie`` (weighted)."""
    table = parts.profiles.model.table
    return float(table.model_counts[table.model_index["newbie"]].sum())


# ---- what a reload keeps ---------------------------------------------------------------------------------
def served_parts(tmp_path: Path, **learning) -> tuple[GatewayConfig, TagRouter, ServedRouter]:
    config = GatewayConfig.model_validate({"feedback_db": tmp_path / "fb.sqlite3", "learning": learning})
    router = two_model_router()
    return config, router, ServedRouter(live(router, config))


def live(router: TagRouter, config: GatewayConfig) -> Live:
    return Live(
        ProfileSet(router, config), "v", Upstreams(router.catalog, config), ModelLimits(router.catalog)
    )


def test_feedback_committed_before_a_reload_reads_the_store_is_learned_once_and_after_it_too(
    tmp_path: Path,
) -> None:
    """A feedback committed but not yet learned when a reload reads the store is in what the reload
    replays: the writer must not learn it again into the new router; one committed after the read must be
    learned. Bug caught: the writer learning its pending records into the router that just replayed them
    (learned twice), or dropping the ones stored after the read (never learned)."""
    config, router, served = served_parts(tmp_path)
    new = live(router, config)

    async def scenario() -> None:
        writer = FeedbackWriter(
            FeedbackStore(config.feedback_db),
            served.update,
            learn_interval_s=30.0,  # nothing is learned until close: the first record waits during the reload
            weigh=served.weigh,
            section=served.storing,
        )
        writer.start()
        await writer.submit(Feedback("before", "win", model="cheap", query=CODE[0]))
        stored = partial(stored_feedback, partial(open_feedback_store, config), lambda seq: None)
        await asyncio.to_thread(served.swap, new, stored)
        await writer.submit(Feedback("after", "loss", model="cheap", query=GREETINGS[0]))
        await writer.close()

    asyncio.run(scenario())
    assert served.current is new
    assert new.profiles.learner.stats.learned == 2  # 'before' from the store, 'after' from the writer


def test_a_follower_poll_that_a_reload_overtakes_learns_nothing_twice_and_loses_nothing(
    tmp_path: Path,
) -> None:
    """Another replica's records read by the follower just before a reload reads the store: the reload
    learns them; the follower must neither learn them again nor skip the ones stored after. Bug caught:
    a follower that learns its read into the new router, or resets its position behind the reload's."""
    config, router, served = served_parts(tmp_path)
    other = FeedbackStore(config.feedback_db)  # another replica
    other.apply([], [Feedback(f"o{i}", "win", model="mid", query=CODE[i]) for i in range(3)])
    new = live(router, config)

    class Overtaken:
        """The store, with a reload (and one more record of the other replica) right after the first read."""

        def __init__(self) -> None:
            self.store, self.reads = FeedbackStore(tmp_path / "fb.sqlite3"), 0

        def changes(self, after: int = 0):
            found = self.store.changes(after)
            self.reads += 1
            if self.reads == 1:
                stored = partial(stored_feedback, partial(open_feedback_store, config), follower.skip_to)
                served.swap(new, stored)
                other.apply([], [Feedback("late", "loss", model="mid", query=CODE[5])])
            return found

    follower = FeedbackFollower(Overtaken(), served.update, after=0, interval_s=0, section=served.storing)
    assert follower.poll() == 0  # the reload learned these three
    assert new.profiles.learner.stats.learned == 3
    assert follower.poll() == 1  # the late one, read on from where the reload stopped
    assert new.profiles.learner.stats.learned == 4
    assert follower.poll() == 0


def test_a_reload_keeps_the_exploration_spend_and_a_keys_feedback_window(tmp_path: Path) -> None:
    """Bug caught: a reload that starts the budget's spend and the per-key windows at zero, so that a
    client could launder its weight bound (or exploration its budget) through reloads."""
    config, router, served = served_parts(tmp_path, per_key_weight=2.0, exploration_budget=0.1)
    profile = served.current.profiles.default
    served.current.profiles.decide(profile, CODE[:4])
    spent = served.current.profiles.learner.budget(profile)
    assert spent.spent > 0
    judged = Judged(CODE[0], "mid", "win", source="key-1")
    assert [served.weigh(judged) for _ in range(2)] == [1.0, 1.0]
    assert served.weigh(judged) == 0.0  # over the key's bound of 2 per window
    served.swap(live(router, config), lambda: [])
    assert served.weigh(judged) == 0.0  # still over it after the reload
    assert served.weigh(Judged(CODE[0], "mid", "win", source="key-2")) == 1.0
    assert served.current.profiles.learner.budget(profile) == spent
