"""The ``tagrouter`` command line: one Typer app whose commands live in this package, one module per group.

Every command runs inside :func:`main`, the one error boundary: a :class:`~tagrouter.errors.TagRouterError`
(bad input, a damaged artifact) becomes one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer

from tagrouter.cli import bench, collect, data, demo, evaluate, routing, serve, speed, vocab
from tagrouter.errors import TagRouterError

app = typer.Typer(
    help="TagRouter: route LLM queries to the cheapest model that answers them well, via tags.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain usage errors: 'Error: …' on one line, no box
)
data_app = typer.Typer(help="Convert benchmark data to history records and catalogues.", no_args_is_help=True)
bench_app = typer.Typer(
    help="Benchmarks (speed, quality); they need the bench extra: pip install 'tagrouter[bench]'.",
    no_args_is_help=True,
)
vocab_app = typer.Typer(help="Build tag vocabularies from a teacher's tags.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")
app.add_typer(vocab_app, name="vocab")

for command in (
    routing.fit,
    routing.update,
    routing.models,
    routing.route,
    routing.tag,
    routing.calibrate,
    routing.inspect,
    demo.demo,
):
    app.command()(command)
app.command("serve")(serve.serve)
app.command("eval")(evaluate.evaluate)
app.command("collect")(collect.collect)
app.command("judge-check")(collect.judge_check)
data_app.command("alpacaeval")(data.data_alpacaeval)
for name in ("dcrouter", "mmlu", "gsm8k", "mt_bench"):
    data_app.command(name)(getattr(data, f"data_{name}"))
data_app.command("judge-labels")(collect.data_judge_labels)
bench_app.command("alpacaeval")(bench.bench_alpacaeval)
bench_app.command("suite")(bench.bench_suite)
bench_app.command("speed")(speed.bench_speed)
bench_app.command("live")(bench.bench_live)
vocab_app.command("build")(vocab.vocab_build)

#: What the ``bench`` extra installs; every ``tagrouter bench`` command needs it.
BENCH_NEEDS = ("matplotlib",)


@bench_app.callback()
def _bench_needs_its_extra() -> None:
    """Benchmark code ships with the package but runs only with the bench extra installed."""
    for name in BENCH_NEEDS:
        try:
            importlib.import_module(name)
        except ImportError:
            raise TagRouterError(f"the benchmarks need {name}: pip install 'tagrouter[bench]'") from None


def main() -> None:
    """Entry point: bad input (a TagRouter error) becomes one line on stderr and exit status 2; an option
    or argument a command cannot take gets the usage message ending in 'Error: …', also exit status 2."""
    try:
        app()
    except TagRouterError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
