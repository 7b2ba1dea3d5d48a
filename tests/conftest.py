"""Shared fixtures: small data that the tests build themselves (and the example history the package ships)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tagrouter.catalog import load_catalog
from tagrouter.demo import EXAMPLES
from tagrouter.records import read_history
from tagrouter.router import TagRouter

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "alpaca_eval"


@pytest.fixture(scope="session")
def example_records():
    return read_history(EXAMPLES / "history.jsonl")


@pytest.fixture(scope="session")
def example_catalog():
    return load_catalog(EXAMPLES / "catalog.yaml")


@pytest.fixture(scope="session")
def example_router(example_records, example_catalog) -> TagRouter:
    """A router fitted on the shipped example history (3 models, 34 queries); do not mutate it."""
    return TagRouter.fit(example_records, example_catalog)


def needs_shared_data():
    return pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"needs the benchmark data in {SHARED_DATA}")
