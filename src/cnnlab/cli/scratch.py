"""`cnnlab scratch train`: the CNN written in NumPy only (cnnlab.scratch), trained and tested."""

from __future__ import annotations

from typing import Annotated

import typer

from cnnlab.cli.output import JsonFlag, console, emit

scratch = typer.Typer(help="The CNN written in NumPy only (cnnlab.scratch).", no_args_is_help=True)


@scratch.command("train")
def train(
    data: Annotated[str, typer.Option(help="Dataset (square gray or RGB images of at least 12x12).")] = "digits",
    epochs: Annotated[int, typer.Option(help="Passes over the training images.")] = 8,
    batch_size: Annotated[int, typer.Option(help="Images per SGD step.")] = 32,
    lr: Annotated[float, typer.Option(help="Peak learning rate (cosine decay to 0).")] = 0.05,
    momentum: Annotated[float, typer.Option(help="SGD momentum.")] = 0.9,
    weight_decay: Annotated[float, typer.Option(help="L2 penalty on every parameter.")] = 5e-4,
    impl: Annotated[str, typer.Option(help="Conv2d implementation: im2col (fast) or loop (readable).")] = "im2col",
    seed: Annotated[int, typer.Option(help="Seed of the initial weights and the batch order.")] = 0,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Train the NumPy LeNet-5 (forward and backward written by hand) and test it."""
    from cnnlab.data import load_data
    from cnnlab.scratch.train import train_scratch

    dataset = load_data(data)
    _, result = train_scratch(dataset, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
                              weight_decay=weight_decay, seed=seed, impl=impl, quiet=quiet or as_json)
    if as_json:
        emit({"data": data, "model": "lenet5 (numpy)", "impl": impl, **result.to_dict()})
        return
    console.print(f"NumPy LeNet-5 ({result.parameters:,} parameters, {impl}): test accuracy [bold]{result.test_acc:.4f}[/] "
                  f"(loss {result.test_loss:.4f}) on {len(dataset.test)} {data} images, {result.seconds:.1f} s")
