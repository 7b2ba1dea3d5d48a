"""Accept rate vs cost plots per setup: single models, the oracle and each router's mean curve
(matplotlib, Agg backend; the ``bench`` extra)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from tagrouter.curves import Reference
from tagrouter.evaluation.report import plot_name
from tagrouter.fileio import atomic_write_bytes


def plot_setup(name: str, setup: dict[str, Any], out_dir: Path, title: str) -> Path:
    """Write ``out_dir/<setup>.png``; cost axis in dollars over the queries (log scale for the pool);
    ``title``: the data set's name."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'tagrouter[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = Reference(**setup["reference"])
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for rname, router in sorted(setup["routers"].items(), key=lambda kv: -kv[1]["auc_mean"]):
        x = [ref.dollars(p[0]) for p in router["curve"]]
        y = [p[1] for p in router["curve"]]
        style = {"linewidth": 2.2, "zorder": 3} if rname == "tagrouter" else {"linewidth": 1.0, "alpha": 0.8}
        ax.plot(x, y, marker=".", markersize=3, label=f"{rname} (AUC {router['auc_mean']:.4f})", **style)
    for model, single in setup["singles"].items():
        ax.scatter(single["cost"], single["ar"], marker="s", color="black", zorder=4)
        ax.annotate(
            model, (single["cost"], single["ar"]), fontsize=7, xytext=(3, -9), textcoords="offset points"
        )
    oracle = setup["oracle"]
    ax.scatter(oracle["cost"], oracle["ar"], marker="*", s=120, color="gold", edgecolor="black", zorder=5)
    ax.annotate(
        "oracle", (oracle["cost"], oracle["ar"]), fontsize=7, xytext=(4, 2), textcoords="offset points"
    )
    if setup["kind"] == "pool":
        ax.set_xscale("log")
    ax.set_xlabel("total cost over the queries (US$)")
    ax.set_ylabel("accept rate (win or tie)")
    ax.set_title(f"{title} — {name} (out-of-fold, mean over seeds)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    path = out_dir / plot_name(name)
    atomic_write_bytes(path, buffer.getvalue())
    return path
