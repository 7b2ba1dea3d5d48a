"""Markdown from ``results.json``: a run's ``results.md`` (every setup's table, TagRouter's lead, plots),
and the suite's summary (one row per data set's setup) for the README block between ``START`` and
``END`` and for ``docs/results.md``. Every figure comes from the results; nothing is written by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tagrouter.errors import DataError
from tagrouter.fileio import atomic_write_text

START, END = "<!-- results:start -->", "<!-- results:end -->"

PROTOCOL_TEXT = (
    "How to read these numbers. Each setup (the pool of routable models, or a weak → strong pair) is "
    "evaluated by 5-fold cross-validation, repeated for each seed with a different random split: every "
    "router learns from four fifths of the queries (the pool's outcomes and, where the history has them, "
    "the outcomes of other judged models, which are never routed to) and chooses models for the fifth it "
    "has not seen; the choices of all five folds are pooled. Sweeping each router's cost knob gives 41 "
    "operating points (total cost, accept rate); for a pair, point k sends the top k/40 of the queries, "
    "ranked by the router, to the strong model; for a pool, the knob λ of argmax(score − λ · expected "
    "cost) is stepped so that the expected cost falls in equal steps from the router's best-score choice "
    "to the cheapest model. Cost is normalised so that 0 is the cheapest single model and 1 the most "
    "accepted one, and the curve is the upper convex hull of the points (mixing two operating points at "
    "random is always possible). **AUC** is the area under that curve over [0, 1] (higher is better); "
    "the **mixture** is the same area for the single models alone (always one model, or a random mix of "
    "two): a router that does not beat it has learnt nothing useful. **APGR** (pairs) rescales AUC so "
    "that the weak model is 0 and the strong one 1 (a random mix scores 0.5). **PAUC** is the area above "
    "the best single model's accept rate, **uplift** the relative accept-rate gain at the best model's "
    "cost, **cost saving** the share of the best model's cost saved at its accept rate ('not reached' "
    "when the curve never gets there). **AR / $ at θ**: the accept rate and cost at the one operating "
    "point each router would pick, chosen on the training folds only (TagRouter's own self-tuned default "
    "knob; for the others the cheapest setting that reaches the best single model's training accept "
    "rate); **shortfall**: how far that accept rate falls below the best single model's (0 when it does "
    "not). The **oracle** sends each query to the cheapest "
    "model that was accepted: the limit of routing on this data. **Lead**: TagRouter's AUC minus that of "
    "the best other router and of the mixture, with a 95% interval over seeds (paired: same folds) and a "
    "95% paired bootstrap interval over queries (1,000 resamples of the pooled out-of-fold choices); "
    "*beyond noise* only when both intervals exclude zero."
)


def _num(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "not reached" if value is None else f"{100 * value:+.1f}%"


def setup_table(setup: dict[str, Any]) -> str:
    """One setup's routers (best AUC first) with the mixture, the single models and the oracle."""
    pair = setup["kind"] == "pair"
    head = (
        "| router | AUC (mean ± std) | "
        + ("APGR | " if pair else "")
        + "PAUC | uplift | cost saving | AR at θ | $ at θ | shortfall |"
    )
    rule = "|" + "---|" * (head.count("|") - 1)
    lines = [head, rule]
    routers = sorted(setup["routers"].items(), key=lambda kv: -kv[1]["auc_mean"])
    for name, r in routers:
        cells = [f"`{name}`", f"{r['auc_mean']:.4f} ± {r['auc_std']:.4f}"]
        if pair:
            cells.append(_num(r["apgr_mean"], 3))
        cells += [
            _num(r["pauc_mean"], 5),
            _pct(r["uplift_mean"]),
            "not reached" if r["cost_saving_mean"] is None else f"{100 * r['cost_saving_mean']:.1f}%",
            f"{r['ar']:.3f}",
            _dollars(r["cost"]),
            f"{r['shortfall']:.3f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    mix = setup["mixture"]
    cells = (
        ["mixture of single models", f"{mix['auc']:.4f}"]
        + (["0.500"] if pair else [])
        + ["0", "+0.0%", "0.0%", "", "", ""]
    )
    lines.append("| " + " | ".join(cells) + " |")
    oracle = setup["oracle"]
    lines.append(
        f"\n{setup['queries']} queries"
        + (
            f" ({setup['dropped_queries']} dropped: a model of the setup lacks their outcome)"
            if setup.get("dropped_queries")
            else ""
        )
        + ". Single models: "
        + ", ".join(f"{m} AR {s['ar']:.3f} at {_dollars(s['cost'])}" for m, s in setup["singles"].items())
        + f". Oracle: AR {oracle['ar']:.3f} at {_dollars(oracle['cost'])}."
    )
    return "\n".join(lines)


def _dollars(value: float) -> str:
    return f"${value:.2f}" if value >= 1 else f"${value:.4f}"


def _interval(pair: list[float] | None) -> str:
    return "–" if pair is None else f"[{pair[0]:+.4f}, {pair[1]:+.4f}]"


def lead_text(setup: dict[str, Any]) -> str:
    """TagRouter's lead over the best other router and the mixture, in one line each."""
    lead = setup.get("lead")
    if not lead:
        return ""
    lines = []
    for key, what in (("best_other", "the best other router"), ("mixture", "the mixture")):
        if key not in lead:
            continue
        c = lead[key]
        name = f"`{c['against']}`" if key == "best_other" else "the mixture"
        lines.append(
            f"- `tagrouter` vs {name} ({what}): AUC {c['auc_difference']:+.4f}, over seeds "
            f"{_interval(c['seed_interval'])}, bootstrap over queries {_interval(c['bootstrap_interval'])}: "
            f"**{_verdict(c['verdict'])}**"
        )
    return "\n".join(lines)


def _verdict(verdict: str) -> str:
    return {"ahead": "ahead beyond noise", "behind": "behind beyond noise"}.get(verdict, "within noise")


def summary_table(results: dict[str, Any]) -> str:
    """Routers × (mean AUC and APGR over the pairs, AUC of the pool), best pool AUC first."""
    setups = results["setups"]
    pairs = [s for s in setups.values() if s["kind"] == "pair"]
    pools = {name: s for name, s in setups.items() if s["kind"] == "pool"}
    names = list(next(iter(setups.values()))["routers"])
    head = ["router"]
    if pairs:
        head += [f"mean AUC, {len(pairs)} pair(s)", f"mean APGR, {len(pairs)} pair(s)"]
    head += [f"AUC {name}" for name in pools]
    rows = []
    for name in names:
        cells: list[float | None] = []
        if pairs:
            cells.append(sum(s["routers"][name]["auc_mean"] for s in pairs) / len(pairs))
            cells.append(sum(s["routers"][name]["apgr_mean"] for s in pairs) / len(pairs))
        cells += [s["routers"][name]["auc_mean"] for s in pools.values()]
        rows.append((name, cells))
    rows.sort(key=lambda row: -(row[1][-1] or 0))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, cells in rows:
        digits = [4, 3] * bool(pairs) + [4] * len(pools)
        lines.append(
            f"| `{name}` | " + " | ".join(_num(v, d) for v, d in zip(cells, digits, strict=True)) + " |"
        )
    mixture = (["", "0.500"] if pairs else []) + [f"{s['mixture']['auc']:.4f}" for s in pools.values()]
    lines.append("| mixture of single models | " + " | ".join(mixture) + " |")
    return "\n".join(lines)


def plot_name(setup_name: str) -> str:
    """File name of a setup's plot."""
    return setup_name.replace(":", "_").replace(">", "_to_").replace("/", "_") + ".png"


def run_section(
    results: dict[str, Any], *, title: str, plot_dir: str = ".", heading: str = "#", plots: bool = True
) -> str:
    """A run's full results: what was run, the summary, then each setup's table, lead and plot (when
    ``plots``)."""
    p, data, env = results["protocol"], results["data"], results.get("environment", {})
    about = (
        f"{data['queries']} queries, {len(data['pool'])} pool models"
        + (f", {len(data['context_models'])} context models" if data["context_models"] else "")
        + f"; seeds {', '.join(map(str, p['seeds']))}; routers fitted on training folds only."
    )
    parts = [
        f"{heading} {title}",
        f"Reproduce with `{p.get('command') or '?'}` ({_runtime(p)}). {about}",
    ]
    notes = [*data.get("conversion", []), *data.get("notes", [])]
    if notes:
        parts.append("Data: " + "; ".join(notes) + ".")
    if env:
        parts.append("Versions: " + ", ".join(f"{k} {v}" for k, v in env.items()) + ".")
    parts += [f"{heading}# Summary", summary_table(results)]
    for name, setup in results["setups"].items():
        parts += [f"{heading}# {name}", setup_table(setup)]
        if lead_text(setup):
            parts.append(lead_text(setup))
        if plots:
            parts.append(f"![{name}]({plot_dir}/{plot_name(name)})")
    return "\n\n".join(parts)


def results_markdown(results: dict[str, Any], *, title: str, plot_dir: str = ".", plots: bool = True) -> str:
    """The ``results.md`` of one run: the run's section (with its plots, when ``plots``) and how to read it."""
    section = run_section(results, title=title, plot_dir=plot_dir, plots=plots)
    return section + "\n\n" + PROTOCOL_TEXT + "\n"


def _runtime(protocol: dict[str, Any]) -> str:
    workers = protocol.get("workers")
    on = f", {workers} worker process{'es' if workers != 1 else ''}" if workers else ""
    return f"run time here: {protocol.get('runtime_s', '?')} s{on}"


# ---- the suite -------------------------------------------------------------------------------------------
def suite_table(runs: dict[str, dict[str, Any]]) -> str:
    """One row per (data set, setup): TagRouter's default, the best other router, the mixture, the lead
    over each with its bootstrap interval and the verdict."""
    lines = [
        "| data set | setup | queries | `tagrouter` AUC | best other router | its AUC | mixture AUC | "
        "lead over best other (95% bootstrap) | lead over mixture (95% bootstrap) |",
        "|---|---|---:|---:|---|---:|---:|---|---|",
    ]
    for data_name, results in runs.items():
        for name, setup in results["setups"].items():
            ours = setup["routers"].get("tagrouter")
            lead = setup.get("lead", {})
            other = lead.get("best_other")
            mixture = lead.get("mixture")
            theirs = setup["routers"][other["against"]] if other else None
            cells = [
                data_name,
                name,
                str(setup["queries"]),
                _auc(ours),
                f"`{other['against']}`" if other else "–",
                _auc(theirs),
                f"{setup['mixture']['auc']:.4f}",
                _lead_cell(other),
                _lead_cell(mixture),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _auc(router: dict[str, Any] | None) -> str:
    return "–" if router is None else f"{router['auc_mean']:.4f} ± {router['auc_std']:.4f}"


def _lead_cell(comparison: dict[str, Any] | None) -> str:
    if comparison is None:
        return "–"
    verdict = {"ahead": "ahead", "behind": "behind"}.get(comparison["verdict"], "within noise")
    return f"{comparison['auc_difference']:+.4f} {_interval(comparison['bootstrap_interval'])} {verdict}"


def suite_block(
    runs: dict[str, dict[str, Any]],
    *,
    command: str,
    runtime_s: float,
    skipped: list[str],
    heading: str = "## Results: the development suite",
) -> str:
    """The README's results section: the suite's table, what was skipped, where the details are."""
    mean = _mean_pool_auc(runs)
    body = [
        heading,
        f"Reproduce with `{command}` (run time here: {runtime_s:.0f} s; every table and plot: "
        "`docs/results.md`). Each data set's pool and pairs, 5-fold cross-validation × "
        f"{len(next(iter(runs.values()))['protocol']['seeds']) if runs else 0} seed(s); "
        "AUC of the accept-rate vs normalised-cost curve (mean ± std over seeds); the lead is "
        "`tagrouter` minus the other, with its 95% paired bootstrap interval over queries, and "
        "'ahead' / 'behind' only when that interval and the interval over seeds both exclude zero "
        "(see `docs/results.md` for how to read the numbers).",
        suite_table(runs),
    ]
    if mean:
        body.append(
            "Mean AUC over the pools of the suite: "
            + ", ".join(f"`{name}` {value:.4f}" for name, value in mean[:5])
            + (f" (of {len(mean)} routers)." if len(mean) > 5 else ".")
        )
    if skipped:
        body.append("Skipped: " + "; ".join(skipped) + ".")
    return "\n\n".join(body)


def _mean_pool_auc(runs: dict[str, dict[str, Any]]) -> list[tuple[str, float]]:
    """Routers that ran on every pool of the suite, by their mean pool AUC (best first)."""
    pools = [s for r in runs.values() for s in r["setups"].values() if s["kind"] == "pool"]
    if not pools:
        return []
    names = set.intersection(*(set(s["routers"]) for s in pools))
    means = {n: sum(s["routers"][n]["auc_mean"] for s in pools) / len(pools) for n in names}
    return sorted(means.items(), key=lambda kv: -kv[1])


def suite_markdown(
    runs: dict[str, dict[str, Any]],
    *,
    command: str,
    runtime_s: float,
    skipped: list[str],
    plot_dirs: dict[str, str],
) -> str:
    """``docs/results.md``: the suite's summary, each data set's full section, how to read them."""
    parts = [
        "# Results",
        suite_block(
            runs, command=command, runtime_s=runtime_s, skipped=skipped, heading="## The development suite"
        ),
    ]
    for data_name, results in runs.items():
        parts.append(run_section(results, title=data_name, plot_dir=plot_dirs[data_name], heading="##"))
    parts.append("## How to read the numbers\n\n" + PROTOCOL_TEXT)
    return "\n\n".join(parts) + "\n"


def update_readme(readme: str | Path, block: str) -> None:
    """Rewrite the block between the results markers of ``readme`` (atomically)."""
    readme = Path(readme)
    if not readme.is_file():
        raise DataError("README not found", path=readme)
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text or text.index(START) > text.index(END):
        raise DataError(f"no '{START}' ... '{END}' block to update", path=readme)
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    atomic_write_text(readme, f"{before}{START}\n{block}\n{END}{after}")
