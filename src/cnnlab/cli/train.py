"""`cnnlab train`: its training options are the fields of TrainConfig (cnnlab/config.py).

`config_flags` builds one option per field from the field's metadata (help line, `--no-` form,
a parser for text), so adding an option is adding a field. Every such option defaults to None,
"not given": the --config file, then TrainConfig's default, fill what the user did not say, and
`cnnlab.training.train` learns which options were given from the keywords it receives.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any

import typer

from cnnlab.cli.output import JsonFlag, console, emit
from cnnlab.config import TrainConfig
from cnnlab.errors import CnnlabError


def flag(name: str) -> str:
    """The option of a TrainConfig field: `batch_size` -> `--batch-size`."""
    return "--" + name.replace("_", "-")


def config_flags() -> list[inspect.Parameter]:
    """One keyword parameter per TrainConfig field, in the form typer reads options from."""
    params = []
    for f in fields(TrainConfig):
        kind = str if f.metadata["parse"] else type(f.default)
        decl = flag(f.name)
        if kind is bool and f.metadata["negatable"]:
            decl += f"/--no-{decl[2:]}"
        option = typer.Option(decl, help=f.metadata["help"])
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[kind | None, option]))
    return params


def with_config_flags(command: Callable[..., None]) -> Callable[..., None]:
    """`command(own options..., **options)` seen by typer as taking TrainConfig's flags first."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.kind is not p.VAR_KEYWORD]
    command.__signature__ = inspect.Signature([*config_flags(), *own])  # type: ignore[attr-defined]
    return command


def given(options: dict[str, Any]) -> dict[str, Any]:
    """The training options given on the command line, as TrainConfig values."""
    parsers = {f.name: f.metadata["parse"] for f in fields(TrainConfig)}
    return {k: parsers[k](v) if parsers[k] else v for k, v in options.items() if v is not None}


@with_config_flags
def train(
    *,
    config: Annotated[Path | None, typer.Option(help="A TOML file of the options above (flags win).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Run directory (default runs/MODEL-DATA-TIME).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the run already in --out.")] = False,
    resume: Annotated[Path | None, typer.Option(help="Continue this interrupted run exactly.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
    as_json: JsonFlag = False,
    **options: Any,
) -> None:
    """Train a model on a dataset; the run directory records everything (see README)."""
    from dataclasses import replace

    from cnnlab.training import distributed
    from cnnlab.training import resume as resume_run
    from cnnlab.training import train as train_run
    from cnnlab.training.recipes import process_start

    flags = given(options)
    if resume is not None:
        if flags or config or out_dir:
            raise CnnlabError(
                f"--resume continues {resume} with its own config.toml; drop the other training options "
                f"({', '.join(map(flag, flags)) or '--config/--out'})."
            )
        saved = TrainConfig.from_toml(resume / "config.toml") if (resume / "config.toml").is_file() else TrainConfig()
        if (code := distributed.launch_if_several(saved, sys.argv[1:])) is not None:  # as many processes as before
            raise typer.Exit(code)
        run = resume_run(resume, quiet=quiet or as_json)
    else:
        base = TrainConfig.from_toml(config) if config else TrainConfig()
        if (code := distributed.launch_if_several(replace(base, **flags).resolved(), sys.argv[1:])) is not None:
            raise typer.Exit(code)
        run = train_run(base, out=out_dir, overwrite=overwrite, quiet=quiet or as_json, started=process_start(), **flags)
    if not distributed.context().is_main:  # rank 0 reports for all of them
        return
    test = run.test_result()
    if as_json:
        emit({"run": str(run.path), "config": run.config.to_dict(), **test})
        return
    from cnnlab.tasks.names import label

    score = run.task.score
    console.print(f"test {label(score)} [bold]{test[f'test_{score}']:.4f}[/] (loss {test['test_loss']:.4f}); "
                  f"run saved in {run.path}")
