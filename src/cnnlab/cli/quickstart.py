"""`cnnlab quickstart`: LeNet-5 on the embedded digits, trained, evaluated and reported."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli.output import JsonFlag, console, emit


def quickstart(
    out_dir: Annotated[Path, typer.Option("--out", help="Run directory (replaced if it holds a run).")] = Path("runs/quickstart"),
    as_json: JsonFlag = False,
) -> None:
    """Train LeNet-5 on the embedded digits, evaluate it and write report.html."""
    from cnnlab.quickstart import quickstart as run_quickstart

    run, evaluation, report = run_quickstart(out_dir, quiet=as_json)
    if as_json:
        emit({"run": str(run.path), "report": str(report), "test_accuracy": evaluation.accuracy})
        return
    console.print(f"test accuracy [bold]{evaluation.accuracy:.4f}[/] on {len(evaluation.y_true)} held-out digits")
    console.print(f"report: {report}")
