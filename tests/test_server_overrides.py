"""Per-request overrides from headers and the body's 'tagrouter' object."""

import pytest

from tagrouter.catalog import Catalog
from tagrouter.errors import DataError
from tagrouter.server.overrides import Overrides, read_overrides

CATALOG = Catalog.model_validate(
    {"models": [{"name": n, "input_usd_per_1m": 1, "output_usd_per_1m": 1} for n in ("a", "b", "mid")]}
)
PROFILES = ("tagrouter", "cheap")


def read(body, headers):
    return read_overrides(body, headers, CATALOG, PROFILES)


def test_overrides_from_headers_and_body_the_body_winning():
    body = {"messages": [], "tagrouter": {"max_cost_usd": 0.01, "exclude": ["a", "b"]}}
    headers = {
        "x-tagrouter-min-model": "mid",
        "x-tagrouter-max-cost-usd": "5",
        "x-tagrouter-profile": "cheap",
    }
    overrides = read(body, headers)
    assert overrides == Overrides(
        profile="cheap", max_cost_usd=0.01, min_model="mid", exclude=frozenset({"a", "b"})
    )
    assert "tagrouter" not in body  # never sent upstream
    assert overrides.echo() == {
        "x-tagrouter-max-cost-usd": "0.01",
        "x-tagrouter-min-model": "mid",
        "x-tagrouter-exclude": "a,b",
    }
    assert read({}, {"x-tagrouter-exclude": "a, b,"}).exclude == {"a", "b"}
    assert read({}, {}) == Overrides()


@pytest.mark.parametrize(
    ("body", "headers", "field"),
    [
        ({"tagrouter": {"max_cost_usd": -1}}, {}, "tagrouter.max_cost_usd"),
        ({"tagrouter": {"max_cost_usd": "lots"}}, {}, "tagrouter.max_cost_usd"),
        ({}, {"x-tagrouter-max-cost-usd": "lots"}, "x-tagrouter-max-cost-usd"),
        ({"tagrouter": {"colour": "red"}}, {}, "tagrouter.colour"),
        ({"tagrouter": "cheap"}, {}, "tagrouter"),
        ({"tagrouter": {"exclude": "a"}}, {}, "tagrouter.exclude"),
        ({"tagrouter": {"exclude": ["a", "gpt-9"]}}, {}, "tagrouter.exclude"),
        ({}, {"x-tagrouter-min-model": "gpt-9"}, "x-tagrouter-min-model"),
        ({"tagrouter": {"profile": "nope"}}, {"x-tagrouter-profile": "cheap"}, "tagrouter.profile"),
    ],
)
def test_a_bad_override_names_its_field(body, headers, field):
    with pytest.raises(DataError) as caught:
        read(body, headers)
    assert caught.value.field == field
