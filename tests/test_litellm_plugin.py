"""The LiteLLM plugin, through a real ``litellm.Router`` to replay upstreams on loopback."""

import asyncio
import inspect
import os

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download of LiteLLM's price map
litellm = pytest.importorskip(
    "litellm", reason="the LiteLLM plugin tests need 'pip install tagrouter[litellm]'"
)

from conftest import capable_router  # noqa: E402
from litellm.proxy.types_utils.utils import get_instance_fn  # noqa: E402
from threaded import ThreadedServer  # noqa: E402

from tagrouter.deciding import Decider, Rule  # noqa: E402
from tagrouter.integrations import litellm as plugin_module  # noqa: E402
from tagrouter.integrations.litellm import TagRouterPlugin  # noqa: E402
from tagrouter.testing.replay import ReplayBehaviour, create_replay_app  # noqa: E402

#: LiteLLM's own types warn when pydantic builds their schemas
pytestmark = pytest.mark.filterwarnings("ignore:Items? .* on TypedDict class:UserWarning")
MODELS = ("small-7b", "mid-70b", "large-api")
QUERY = "Write a Python function that sorts a list of numbers."


@pytest.fixture(scope="module")
def upstreams():
    """One replay upstream per catalogue model: name -> (server, behaviour)."""
    behaviours = {name: ReplayBehaviour() for name in MODELS}
    servers = {
        name: ThreadedServer(create_replay_app(name, behaviour=b)).start() for name, b in behaviours.items()
    }
    yield {name: (servers[name], behaviours[name]) for name in MODELS}
    for server in servers.values():
        server.stop()


def litellm_router(upstreams, plugin: TagRouterPlugin) -> "litellm.Router":
    """A LiteLLM router whose group ``tagrouter`` has one deployment per upstream."""
    deployments = [
        {
            "model_name": "tagrouter",
            "litellm_params": {"model": f"openai/{name}", "api_base": server.url + "/v1", "api_key": "k"},
        }
        for name, (server, _) in upstreams.items()
    ]
    return litellm.Router(model_list=deployments, plugins=[plugin], num_retries=0)


def send(upstreams, plugin: TagRouterPlugin, messages):
    """The answer through a LiteLLM router with ``plugin``, and which upstream served it (by the replay
    upstreams' call counts)."""
    before = {name: b.calls for name, (_, b) in upstreams.items()}
    answer = asyncio.run(litellm_router(upstreams, plugin).acompletion(model="tagrouter", messages=messages))
    served = [name for name, (_, b) in upstreams.items() if b.calls != before[name]]
    assert len(served) == 1
    return answer, served[0]


def test_each_request_goes_to_the_upstream_tagrouter_chooses(upstreams, example_router):
    for knob, expected in ((-1e9, "large-api"), (1e9, "small-7b")):  # dearest / cheapest always
        router = example_router.with_decider(Decider(Rule.UTILITY, knob))
        answer, served = send(upstreams, TagRouterPlugin(router), [{"role": "user", "content": QUERY}])
        assert served == expected == router.route(QUERY).model
        assert answer.choices[0].message.content.startswith(f"[{expected}]")
        assert upstreams[expected][1].seen_models[-1] == expected  # LiteLLM strips the 'openai/' prefix
    default = TagRouterPlugin(example_router)
    for query in ("Hello there!", "Prove that 17 is prime.", QUERY):
        _, served = send(upstreams, default, [{"role": "user", "content": query}])
        assert served == example_router.route(query).model


def test_an_image_request_reaches_only_an_image_model(upstreams, example_router):
    dearest = example_router.with_decider(Decider(Rule.UTILITY, -1e9))
    router = capable_router(dearest, **{"mid-70b": {"modalities": ["text", "image"]}})
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    message = {"role": "user", "content": [{"type": "text", "text": QUERY}, image]}
    _, served = send(upstreams, TagRouterPlugin(router), [message])
    assert served == "mid-70b"
    _, served = send(upstreams, TagRouterPlugin(router), [{"role": "user", "content": QUERY}])
    assert served == "large-api"


def test_the_plugin_loads_a_saved_router_and_leaves_other_groups_alone(
    upstreams, example_router, tmp_path, monkeypatch
):
    dearest = example_router.with_decider(Decider(Rule.UTILITY, -1e9))
    dearest.save(tmp_path / "router")
    monkeypatch.setenv(plugin_module.ROUTER_ENV, str(tmp_path / "router"))
    monkeypatch.delitem(plugin_module.__dict__, "plugin", raising=False)
    # what a LiteLLM proxy does with `router_settings: {plugins: ["tagrouter.integrations.litellm.plugin"]}`
    # (proxy_server.resolve_routing_plugins; the proxy itself needs litellm[proxy])
    loaded = get_instance_fn("tagrouter.integrations.litellm.plugin")
    assert isinstance(loaded, TagRouterPlugin) and isinstance(loaded, litellm.types.router.RoutingPlugin)
    assert inspect.iscoroutinefunction(loaded.run) and loaded is plugin_module.plugin
    _, served = send(upstreams, loaded, [{"role": "user", "content": QUERY}])
    assert served == "large-api"
    only_other = TagRouterPlugin(dearest, model_groups=["somewhere-else"])
    counts = {name: 0 for name in MODELS}
    for _ in range(12):  # LiteLLM's own shuffle picks among all three deployments
        counts[send(upstreams, only_other, [{"role": "user", "content": QUERY}])[1]] += 1
    assert sum(counts.values()) == 12 and counts["large-api"] < 12
