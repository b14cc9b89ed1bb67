"""The `cnnlab` command: every command, listed in the order `cnnlab --help` shows them.

Each command is a thin shell in the module of its area: it parses, calls the Python API and
prints a table or, with --json, one JSON document (cli/output.py). The modules import nothing
heavy at the top, so `cnnlab --help` answers at once; torch and the rest load inside a command.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from cnnlab.cli import (
    attack,
    audit,
    bench,
    catalog,
    compress,
    evaluate,
    experiment,
    explain,
    generate,
    inside,
    publish,
    quickstart,
    scratch,
    serve,
    track,
    train,
)
from cnnlab.cli.output import run_command

app = typer.Typer(
    help="Build, train, explain, attack and audit convolutional neural networks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of an error.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if debug:
        os.environ["CNNLAB_DEBUG"] = "1"
    if version:
        from cnnlab import __version__

        print(__version__)
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        print(ctx.get_help())
        raise typer.Exit()


for command in (
    quickstart.quickstart, train.train, evaluate.evaluate, evaluate.predict, catalog.summary, catalog.models,
    catalog.datasets, publish.report, inside.conv, inside.show, explain.explain, explain.influence, attack.attack,
    audit.compare, audit.verify, compress.tree, compress.compress, publish.card, bench.bench, serve.serve, serve.playground, track.track,
    generate.generate, generate.provenance,
):
    app.command()(command)
app.add_typer(experiment.experiment, name="experiment")
app.add_typer(scratch.scratch, name="scratch")
app.add_typer(audit.audit, name="audit")


def main() -> None:
    """Entry point (`cnnlab` in pyproject.toml): a user's error is one line on stderr and exit 1."""
    run_command(app)
