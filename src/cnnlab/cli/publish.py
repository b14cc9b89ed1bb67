"""What a run publishes: `cnnlab report` (report.html) and `cnnlab card` (the model card)."""

from __future__ import annotations

from cnnlab.cli.options import RunArg
from cnnlab.cli.output import JsonFlag, console, emit


def report(run_dir: RunArg, as_json: JsonFlag = False) -> None:
    """(Re)write RUN/report.html from what the run holds (run `cnnlab evaluate` first for its test section)."""
    from cnnlab.publish import write_report
    from cnnlab.run import Run

    path = write_report(Run.load(run_dir))
    if as_json:
        emit({"report": str(path)})
        return
    console.print(f"report: {path}")


def card(run_dir: RunArg, as_json: JsonFlag = False) -> None:
    """Write RUN/MODEL_CARD.md and MODEL_CARD.html (Mitchell et al. 2019) from what was measured."""
    from cnnlab.publish import write_card
    from cnnlab.run import WEIGHTS, Run

    # the card reports what the weights measured: load them (checked) when there are any
    files = write_card(Run.load(run_dir, weights="model" if (run_dir / WEIGHTS).is_file() else "none"))
    if as_json:
        emit({k: str(v) for k, v in files.items()})
        return
    for name, path in files.items():
        console.print(f"{name}: {path}")
