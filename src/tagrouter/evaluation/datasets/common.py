"""What every converter shares: its result (history records, catalogue, what it assumed), the price table
and writing ``history.jsonl`` + ``catalog.yaml``."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from tagrouter.catalog import Catalog, ModelCard
from tagrouter.errors import DataError
from tagrouter.records import HistoryRecord, write_history

#: The variable that may name the folder holding the benchmark data sets (``alpaca_eval/``, ``routellm/``,
#: ``llmrouter_dcrouter/``), for commands run without ``--data``: an explicit opt-in, never a default.
DATA_VARIABLE = "TAGROUTER_DATA"


def data_folder(given: Path | None, subfolder: str = "") -> Path:
    """The data folder of a command: ``given`` (its ``--data``), else ``$TAGROUTER_DATA/subfolder``; with
    neither, a :class:`DataError` that names the option."""
    if given is not None:
        return given
    root = os.environ.get(DATA_VARIABLE)
    if root:
        return Path(root) / subfolder
    what = f"the {subfolder} folder" if subfolder else "the folder holding the data sets"
    raise DataError(
        f"no data given: pass --data DIR ({what}), or set {DATA_VARIABLE} to the data sets' folder"
    )


@dataclass(frozen=True)
class Converted:
    """A data set as history + catalogue; ``notes``: one line per assumption the conversion made."""

    records: list[HistoryRecord]
    catalog: Catalog
    notes: list[str] = field(default_factory=list)

    def write(self, out: Path) -> tuple[Path, Path]:
        """Write ``out/history.jsonl`` and ``out/catalog.yaml``; returns both paths."""
        out.mkdir(parents=True, exist_ok=True)
        history, catalog = out / "history.jsonl", out / "catalog.yaml"
        write_history(history, self.records)
        self.catalog.save(catalog)
        return history, catalog


def read_prices(path: Path) -> dict[str, tuple[float, float]]:
    """Dollars per 1M input and output tokens per model of ``prices_usd_per_1M_tokens.csv`` (models
    without a public price are left out)."""
    if not path.is_file():
        raise DataError("price table not found", path=path)
    prices = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["input_usd_per_1M"] and row["output_usd_per_1M"]:
                prices[row["model"]] = (float(row["input_usd_per_1M"]), float(row["output_usd_per_1M"]))
    return prices


def catalog_of(prices: dict[str, tuple[float, float]], models: list[str]) -> Catalog:
    """A catalogue of ``models`` with their prices."""
    missing = [m for m in models if m not in prices]
    if missing:
        raise DataError(f"no price for model(s) {', '.join(missing)}")
    return Catalog(
        models=[
            ModelCard(name=m, input_usd_per_1m=prices[m][0], output_usd_per_1m=prices[m][1]) for m in models
        ]
    )


def require(path: Path, what: str) -> Path:
    """``path`` if it is a file, else a clear error naming the data set."""
    if not path.is_file():
        raise DataError(f"not found: expected the {what}", path=path)
    return path
