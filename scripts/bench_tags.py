"""The tag benchmark (:mod:`tagrouter.evaluation.tagbench`) on the labelled data sets of the suite: for each,
the default embedded tagger is fitted on the set's queries and its tags are measured (coarse tags that
name the label, fine tags grounded in the query, fine tags that are no word of the data) and a spot-check
list is written.

    python scripts/bench_tags.py --data ../shared/data --out results/tags
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tagrouter.embedding import default_embedder
from tagrouter.evaluation import tagbench
from tagrouter.fileio import atomic_write_json, atomic_write_text
from tagrouter.tagging.embedded import EmbeddedTagger


def spot_markdown(results: dict) -> str:
    lines = ["# Tag benchmark: spot check", ""]
    for name, figures in results.items():
        lines += [f"## {name}", "", "| label | query | tags |", "|---|---|---|"]
        for row in figures["spot_check"]:
            query = " ".join(row["query"].split()).replace("|", "\\|")
            lines.append(f"| {row['label']} | {query} | {', '.join(row['tags'])} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("results/tags"))
    args = parser.parse_args()
    embedder = default_embedder()
    started = time.perf_counter()
    sets = tagbench.suite_sets(args.data, embedder)
    if not sets:
        raise SystemExit(f"no labelled data set found under {args.data}")

    def fit_tagger(texts: list[str]):
        return EmbeddedTagger.fit(texts, embedder=embedder).tag

    results = tagbench.run(sets, fit_tagger)
    print(
        f"{'data set':10} {'queries':>8} {'labels':>7} {'coarse named':>13} {'fine grounded':>14} {'non-words':>10}"
    )
    for name, f in results.items():
        print(
            f"{name:10} {f['queries']:8d} {f['labels']:7d} {f['coarse_named']:13.3f} "
            f"{f['fine_grounded']:14.3f} {f['fine_nonwords']:10.4f}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        args.out / "tags.json", {"seconds": round(time.perf_counter() - started, 1), "sets": results}
    )
    atomic_write_text(args.out / "spot_check.md", spot_markdown(results))
    print(f"wrote {args.out / 'tags.json'} and {args.out / 'spot_check.md'}")


if __name__ == "__main__":
    main()
