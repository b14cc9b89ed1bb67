"""What cnnlab has: `cnnlab models`, `cnnlab datasets`, and `cnnlab summary` of one model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli.options import parse_shape
from cnnlab.cli.output import JsonFlag, console, emit, table


def models(as_json: JsonFlag = False) -> None:
    """The model registry: names, papers, parameter counts at the paper's input."""
    from cnnlab.models import model_entries

    entries = [
        {"name": e.name, "family": e.family, "paper": e.paper, "reference_input": "x".join(map(str, e.reference_input)),
         "reference_classes": e.reference_classes, "reference_params": e.reference_params}
        for e in model_entries()
    ]
    if as_json:
        emit({"models": entries})
        return
    rows = [[e["name"], e["paper"], f"{e['reference_input']} -> {e['reference_classes']}", f"{e['reference_params']:,}"]
            for e in entries]
    console.print(table("models", ["name", "paper", "reference input", "parameters"], rows))


def datasets(as_json: JsonFlag = False) -> None:
    """The dataset registry and where each dataset comes from."""
    from cnnlab.data import dataset_entries

    entries = [{"name": e.name + (":PATH" if e.takes_arg else ""), "description": e.description} for e in dataset_entries()]
    if as_json:
        emit({"datasets": entries})
        return
    console.print(table("datasets", ["name", "description"], [[e["name"], e["description"]] for e in entries]))


def summary(
    target: Annotated[str, typer.Argument(metavar="MODEL|RUN", help="A model name or a run directory.")],
    input_shape: Annotated[str, typer.Option("--input", help="Input CxHxW for a model name.")] = "1x28x28",
    classes: Annotated[int, typer.Option(help="Number of classes for a model name.")] = 10,
    as_json: JsonFlag = False,
) -> None:
    """Layers, output shapes, learned parameters and FLOPs; chosen hyperparameters apart."""
    import torch

    from cnnlab.models import build_model
    from cnnlab.run import Run
    from cnnlab.summary import summarize

    if (Path(target) / "config.toml").is_file():
        run = Run.load(target)
        s = summarize(run.model, run.input_shape, run.config.model, hyperparameters=run.config.to_dict())
    else:
        shape = parse_shape(input_shape)
        with torch.device("meta"):  # shapes and counts need no memory, even for VGG-16
            model = build_model(target, shape, classes)
        s = summarize(model, shape, target)
    if as_json:
        emit(s.to_dict())
        return
    rows = [[m.name, m.type, m.chosen, "x".join(map(str, m.output_shape)), f"{m.params:,}", f"{m.flops:,}"] for m in s.layers]
    console.print(table(f"{s.model} on {'x'.join(map(str, s.input_shape))}",
                        ["layer", "type", "chosen", "output", "learned", "FLOPs"], rows))
    console.print(f"learned parameters [bold]{s.params:,}[/] ({s.trainable:,} trainable), buffers {s.buffers:,}, "
                  f"forward FLOPs per image {s.flops:,}")
    if s.hyperparameters:
        console.print(table("chosen hyperparameters (config.toml)", ["name", "value"],
                            [[k, v] for k, v in s.hyperparameters.items()]))
