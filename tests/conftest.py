"""Shared fixtures: small data that the tests build themselves (and the example history the package ships)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from tagrouter.catalog import Catalog, load_catalog
from tagrouter.cli.demo import EXAMPLES
from tagrouter.records import read_history
from tagrouter.router import TagRouter

pytest_plugins = ["gateway_fixtures", "strict_skips"]

#: The benchmark data some tests read: ``$TAGROUTER_DATA`` when set, else ``../shared/data`` beside the
#: checkout. Tests pass it to the code explicitly: the package has no default data folder.
SHARED_ROOT = Path(
    os.environ.get("TAGROUTER_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)
SHARED_DATA = SHARED_ROOT / "alpaca_eval"


@pytest.fixture(scope="session")
def example_records():
    return read_history(EXAMPLES / "history.jsonl")


@pytest.fixture(scope="session")
def example_catalog():
    return load_catalog(EXAMPLES / "catalog.yaml")


@pytest.fixture(scope="session")
def example_router(example_records, example_catalog) -> TagRouter:
    """A router fitted on the shipped example history (3 models, 64 queries); do not mutate it."""
    return TagRouter.fit(example_records, example_catalog)


def capable_router(router: TagRouter, **cards: dict) -> TagRouter:
    """``router`` with capability fields (e.g. ``modalities``, ``tools``) added to the named catalogue cards."""
    models = [{**card.model_dump(), **cards.get(card.name, {})} for card in router.catalog.models]
    catalog = Catalog.model_validate({"models": models})
    return TagRouter(router.model.with_catalog(catalog), router.decider)


def needs_shared_data():
    return pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"needs the benchmark data in {SHARED_DATA}")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The benchmark data folder (:data:`SHARED_ROOT`); a test that takes it skips, saying why, without it."""
    if not SHARED_ROOT.is_dir():
        pytest.skip(f"needs the benchmark data in {SHARED_ROOT} (or set TAGROUTER_DATA to its folder)")
    return SHARED_ROOT


@pytest.fixture()
def tiny_data(tmp_path):
    """A three-instruction, two-model copy of the AlpacaEval layout (cheap: win/loss/tie; dear: tie/tie/win)."""
    folder = tmp_path / "alpaca_eval"
    folder.mkdir()
    (folder / "instructions.jsonl").write_text(
        "\n".join(
            json.dumps({"idx": i, "dataset": "x", "instruction": t})
            for i, t in enumerate(["Say hi.", "Add 2 and 3.", "Name a colour."])
        )
        + "\n"
    )
    verdicts = ["annotator,model_dir,reference_generator_1,generator_2,idx,preference"]
    prefs = {"cheap": ["2.0", "1", ""], "dear": ["1.5", "0", "2"]}
    for model, values in prefs.items():
        verdicts += [
            f"alpaca_eval_gpt4,{model},text_davinci_003,{model},{i},{p}" for i, p in enumerate(values)
        ]
    verdicts.append("weighted_alpaca_eval_gpt4_turbo,cheap,gpt4_1106_preview,cheap,0,1.9")  # other annotator
    with gzip.open(folder / "verdicts.csv.gz", "wt") as handle:
        handle.write("\n".join(verdicts) + "\n")
    (folder / "instruction_tokens.csv").write_text(
        "idx,instruction_chars,instruction_tokens_cl100k\n0,7,3\n1,12,5\n2,14,4\n"
    )
    lengths = [
        "model_dir,generator,idx,output_chars,output_tokens_cl100k",
        "cheap,cheap,0,40,10",
        "cheap,cheap,1,80,20",
        "cheap,cheap,2,120,30",
        "dear,dear,0,400,100",
        "dear,dear,1,800,200",
    ]  # dear lacks idx 2: imputed as mean 150
    with gzip.open(folder / "output_lengths.csv.gz", "wt") as handle:
        handle.write("\n".join(lengths) + "\n")
    (tmp_path / "prices_usd_per_1M_tokens.csv").write_text(
        "model,kind,litellm_key,price_source,input_usd_per_1M,output_usd_per_1M,note\n"
        "cheap,open,x,y,0.2,0.4,\ndear,api,x,y,10,30,\nnoprice,api,,,,,\n"
    )
    return folder


def fit_example(out: Path, *options: str):
    """Run ``tagrouter fit`` on the shipped example history and catalogue; returns the CLI result."""
    from typer.testing import CliRunner

    from tagrouter.cli import app

    args = [
        "fit",
        str(EXAMPLES / "history.jsonl"),
        "--catalog",
        str(EXAMPLES / "catalog.yaml"),
        "--out",
        str(out),
    ]
    return CliRunner().invoke(app, [*args, *options])
