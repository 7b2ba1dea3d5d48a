"""Gateway configuration: defaults, YAML loading with paths relative to the file, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tagrouter.errors import DataError
from tagrouter.server.config import DEFAULT_PROFILE, GatewayConfig, load_gateway_config


def test_defaults_serve_one_profile_without_keys() -> None:
    config = GatewayConfig()
    assert list(config.profiles) == [DEFAULT_PROFILE] and config.default_profile == DEFAULT_PROFILE
    assert config.client_keys() == [] and config.fallback_depth == 2


def test_yaml_config_resolves_paths_against_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "gateway.yaml"
    path.parent.mkdir()
    path.write_text(
        "feedback_db: data/fb.sqlite3\n"
        "api_keys: [sk-a]\n"
        "profiles:\n"
        "  cheap: {budget: {history: [h.jsonl], mean_cost_usd: 0.001}}\n"
        "  best: {rule: within, knob: 0.0, reference_model: dear}\n",
        encoding="utf-8",
    )
    config = load_gateway_config(path)
    assert config.feedback_db == path.parent / "data" / "fb.sqlite3"
    assert config.profiles["cheap"].budget.history == [path.parent / "h.jsonl"]
    assert list(config.profiles) == [DEFAULT_PROFILE, "cheap", "best"]  # the default profile is always there
    assert config.profiles["best"].knob == 0.0 and config.client_keys() == ["sk-a"]


def test_client_keys_from_the_environment_are_read_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    config = GatewayConfig(api_keys=["sk-a"], api_keys_env="TEST_KEYS")
    monkeypatch.setenv("TEST_KEYS", "sk-b, ,sk-c")
    assert config.client_keys() == ["sk-a", "sk-b", "sk-c"]


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("fallback_depht: 2\n", "fallback_depht", "unknown field"),
        ("fallback_depth: -1\n", "fallback_depth", "greater than or equal to 0"),
        ("profiles: {p: {knob: 1, budget: {history: [h], strong_share: 0.5}}}\n", "profiles.p", "not both"),
        (
            "profiles: {p: {budget: {history: [h], strong_share: 0.5, mean_cost_usd: 1}}}\n",
            "profiles.p.budget",
            "one",
        ),
        ("profiles: {p: {rule: best}}\n", "profiles.p.rule", "'gap', 'within' or 'utility'"),
        ("default_profile: missing\n", None, "default_profile 'missing' is not among the profiles"),
    ],
)
def test_bad_settings_name_the_file_and_field(
    tmp_path: Path, text: str, field: str | None, message: str
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as caught:
        load_gateway_config(path)
    assert str(path) in str(caught.value) and message in str(caught.value)
    if field:
        assert caught.value.field == field


def test_missing_empty_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_gateway_config(tmp_path / "nope.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    assert load_gateway_config(empty).profiles.keys() == {DEFAULT_PROFILE}
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n", encoding="utf-8")
    with pytest.raises(DataError, match="mapping"):
        load_gateway_config(listing)
