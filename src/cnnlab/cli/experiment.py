"""`cnnlab experiment ...`: experiments that train several runs to reproduce a claim of the
lecture on real data (cnnlab.experiments): BadNets backdoors, label noise found by TracIn,
MLP vs CNN under a pixel permutation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli.output import JsonFlag, console, emit, table
from cnnlab.errors import CnnlabError

experiment = typer.Typer(help="Experiments that reproduce a claim of the lecture on real data.", no_args_is_help=True)


@experiment.command()
def backdoor(
    data: Annotated[str, typer.Option(help="Dataset to poison.")] = "fashion-mnist",
    rate: Annotated[str, typer.Option(help="Poisoning rates, comma-separated shares of the training set.")] = "0.005,0.01,0.05",
    target: Annotated[int, typer.Option(help="Class index the trigger should send images to.")] = 0,
    model: Annotated[str, typer.Option(help="Model name.")] = "lenet5",
    epochs: Annotated[int, typer.Option(help="Epochs of each training (clean and poisoned).")] = 5,
    batch_size: Annotated[int, typer.Option(help="Images per optimizer step.")] = 128,
    seed: Annotated[int, typer.Option(help="Seed of the training and of the poisoned images' choice.")] = 0,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Folder for the runs (default runs/backdoor-DATA).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the experiment already in --out.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """BadNets (Gu et al. 2017): clean accuracy and attack success for each poisoning rate."""
    from cnnlab.experiments.backdoor import backdoor_experiment, parse_rates
    from cnnlab.files import slug

    rates = parse_rates(rate)
    if epochs < 1:
        raise CnnlabError("--epochs must be at least 1.")
    folder = out_dir or Path("runs") / f"backdoor-{slug(data)}"
    record = backdoor_experiment(data, rates, target, model, epochs, folder, seed, quiet=quiet or as_json,
                                 batch_size=batch_size, overwrite=overwrite)
    if as_json:
        emit(record)
        return
    rows = [[f"{r['rate']:.1%}" + (" (clean)" if r["rate"] == 0 else ""), r["poisoned_images"],
             f"{r['clean_accuracy']:.4f}", f"{r['attack_success']:.4f}"] for r in record["rows"]]
    console.print(table(f"BadNets on {data}, {model}, {epochs} epochs, target class {target} ({record['target_class']})",
                        ["poisoned", "images", "clean accuracy", "attack success"], rows))
    console.print(f"examples: {record['files']['examples']}")


@experiment.command("label-noise")
def label_noise(
    data: Annotated[str, typer.Option(help="Dataset to corrupt.")] = "fashion-mnist",
    flip: Annotated[float, typer.Option(help="Share of training labels to flip.")] = 0.05,
    model: Annotated[str, typer.Option(help="Model to train.")] = "lenet5",
    epochs: Annotated[int, typer.Option(help="Training epochs (one TracIn checkpoint each).")] = 3,
    batch_size: Annotated[int, typer.Option(help="Images per optimizer step.")] = 128,
    seed: Annotated[int, typer.Option(help="Seed of the flips and of the training.")] = 0,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Run directory (default runs/label-noise-DATA).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the run already in --out.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Flip labels, train, and see whether TracIn self-influence finds them (vs the loss ranking and chance)."""
    from cnnlab.experiments.label_noise import label_noise as run_experiment
    from cnnlab.files import slug

    out_dir = out_dir or Path("runs") / f"label-noise-{slug(data)}"
    result = run_experiment(data, flip, model=model, epochs=epochs, batch_size=batch_size, seed=seed, out=out_dir,
                            quiet=as_json, overwrite=overwrite)
    if as_json:
        emit(result.to_dict())
        return
    rows = [
        ["TracIn self-influence", f"{result.precision_tracin:.3f}", f"{result.precision_tracin / result.base_rate:.1f}x"],
        ["per-example loss", f"{result.precision_loss:.3f}", f"{result.precision_loss / result.base_rate:.1f}x"],
        ["random (base rate)", f"{result.base_rate:.3f}", "1.0x"],
    ]
    console.print(table(f"flipped labels among the top {result.flipped} of {result.train_images} training images "
                        f"({model} on {data}, {epochs} epochs, test acc {result.test_acc:.4f})",
                        ["ranking", "precision", "vs base rate"], rows))
    console.print(f"trained in {result.train_seconds:.0f} s, ranked in {result.rank_seconds:.1f} s; run: {result.run}")


@experiment.command("mlp-vs-cnn")
def mlp_vs_cnn(
    data: Annotated[str, typer.Option(help="Dataset (fashion-mnist, digits, ...).")] = "fashion-mnist",
    epochs: Annotated[int, typer.Option(help="Epochs of each of the four trainings.")] = 3,
    mlp: Annotated[str, typer.Option(help="The fully connected model.")] = "mlp",
    cnn: Annotated[str, typer.Option(help="The convolutional model.")] = "lenet5",
    seed: Annotated[int, typer.Option(help="Seed of the trainings and of the pixel permutation.")] = 0,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Folder for the four runs (default runs/mlp-vs-cnn-DATA).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the experiment already in --out.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Parameters of an MLP vs a CNN, and the fixed pixel-permutation test (MLP unmoved, CNN drops)."""
    from cnnlab.data import load_data
    from cnnlab.experiments.mlp_vs_cnn import mlp_vs_cnn as run_experiment
    from cnnlab.files import slug

    dataset = load_data(data)
    record = run_experiment(dataset, out_dir or Path("runs") / f"mlp-vs-cnn-{slug(data)}", mlp=mlp, cnn=cnn,
                            epochs=epochs, seed=seed, overwrite=overwrite, quiet=quiet or as_json)
    if as_json:
        emit(record)
        return
    c, h, w = record["input_shape"]
    console.print(table(f"parameters for {c}x{h}x{w} images", ["model", "layer", "formula", "params", "whole model"],
                        [[p["model"], p["layer"], p["formula"], f"{p['params']:,}", f"{p['total']:,}"]
                         for p in record["parameters"]]))
    rows = [[m, f"{a['original']:.4f}", f"{a['permuted']:.4f}", f"{a['change_points']:+.2f}"]
            for m, a in record["accuracy"].items()]
    console.print(table(f"test accuracy on {record['data']}, {record['epochs']} epochs, one fixed pixel permutation",
                        ["model", "original", "permuted", "change (points)"], rows))
    for name, path in record["files"].items():
        console.print(f"{name}: {path}")
