"""Smaller or hierarchical models from a trained run: `cnnlab tree` (a CNN Tree over the classes
it confuses) and `cnnlab compress` (pruning, int8, distillation); each writes a new run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cnnlab.cli.options import RunArg
from cnnlab.cli.output import JsonFlag, console, emit, table
from cnnlab.errors import CnnlabError

OutDir = Annotated[Path, typer.Option("--out", help="Folder of the new run.")]
Overwrite = Annotated[bool, typer.Option(help="Replace a run already in --out.")]
Quiet = Annotated[bool, typer.Option(help="No progress bar.")]


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def _size_rows(sizes: dict[str, dict[str, Any]]) -> list[list[Any]]:
    def mb(v: int | None) -> str:
        return "n/a" if v is None else f"{v / 1e6:.3f}"

    return [[name, f"{s['params']:,}", f"{s['flops_per_image']:,}", mb(s["weights_bytes"]),
             f"{s['latency_ms_batch1']:.3f}", f"{s['latency_ms_batch256']:.1f}"] for name, s in sizes.items()]


SIZE_HEADER = ["model", "parameters", "FLOPs / image", "weights MB", "ms at batch 1", "ms at batch 256"]


def tree(
    run_dir: RunArg,
    out_dir: OutDir,
    groups: Annotated[str, typer.Option(
        help="auto (cut the confusion dendrogram), N groups, or a JSON FILE: a list of lists of class names.")] = "auto",
    epochs: Annotated[int | None, typer.Option(help="Epochs of the root and of each leaf (default: the run's).")] = None,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    as_json: JsonFlag = False,
) -> None:
    """CNN Tree: group the classes RUN confuses (validation confusion, average-linkage clustering),
    train a root over the groups and a leaf per group, save them as one model in a new run, and
    compare it with RUN on the test split."""
    from cnnlab.compress.tree import tree_run
    from cnnlab.run import Run

    if epochs is not None and epochs < 1:
        raise CnnlabError(f"--epochs must be at least 1, got {epochs}.")
    run, report = tree_run(Run.load(run_dir), out_dir, groups, epochs, overwrite, quiet)
    if as_json:
        emit(report)
        return
    console.print("groups: " + "; ".join("{" + ", ".join(g) + "}" for g in report["groups"]))
    rows = [[" + ".join(g["group"]), g["images"], _pct(g["flat_accuracy"]), _pct(g["tree_accuracy"]), _pct(g["root_accuracy"])]
            for g in report["by_group"]]
    console.print(table("test accuracy per group", ["group", "images", "flat", "tree", "root picks the group"], rows))
    console.print(table("size and speed", SIZE_HEADER, _size_rows({"flat": report["flat_size"], "tree": report["tree_size"]})))
    console.print(f"flat [bold]{_pct(report['flat_accuracy'])}[/], tree [bold]{_pct(report['tree_accuracy'])}[/], "
                  f"root {_pct(report['root_accuracy'])}: {report['verdict']}.")
    console.print(f"run: {run.path}\ndendrogram: {report['figures']['dendrogram']}")


def compress(
    run_dir: RunArg,
    out_dir: OutDir,
    prune: Annotated[float | None, typer.Option(help="Share of weights (or, --structured, of channels) to remove, e.g. 0.5.")] = None,
    structured: Annotated[bool, typer.Option(help="Prune whole channels (L1 norm of filters): the layers shrink.")] = False,
    quantize: Annotated[str | None, typer.Option(help="int8: static post-training quantization, calibrated on training images.")] = None,
    calibration: Annotated[int, typer.Option(help="Training images that calibrate int8 activations.")] = 1024,
    distill: Annotated[Path | None, typer.Option(
        metavar="TEACHER_RUN", help="Train RUN's architecture anew from this teacher's soft outputs (Hinton et al. 2015).")] = None,
    temperature: Annotated[float, typer.Option(help="Distillation temperature T.")] = 4.0,
    alpha: Annotated[float, typer.Option(help="Distillation: weight of the teacher's term (1 - alpha: the labels').")] = 0.9,
    epochs: Annotated[int | None, typer.Option(
        help="Pruning: fine-tuning epochs (default 1, --structured: RUN's; 0: none). Distillation: epochs (default: RUN's).")] = None,
    lr: Annotated[float | None, typer.Option(help="Pruning: fine-tuning peak learning rate (default: a fifth of RUN's).")] = None,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    as_json: JsonFlag = False,
) -> None:
    """Make RUN smaller: --prune 0.5 [--structured], --quantize int8, or --distill TEACHER_RUN; the
    result is a new run whose provenance names RUN as its parent; prints both side by side."""
    from cnnlab.compress.report import compress_report
    from cnnlab.run import Run

    chosen = [name for name, on in (("--prune", prune is not None), ("--quantize", quantize is not None),
                                    ("--distill", distill is not None)) if on]
    if len(chosen) != 1:
        raise CnnlabError("give exactly one of --prune, --quantize or --distill"
                          + (f" (got {' and '.join(chosen)})." if chosen else "."))
    parent = Run.load(run_dir)
    if prune is not None:
        from cnnlab.compress.prune import prune_run

        run = prune_run(parent, out_dir, prune, structured, epochs, lr, overwrite, quiet)
    elif quantize is not None:
        from cnnlab.compress.quantize import quantize_run

        run = quantize_run(parent, out_dir, quantize, calibration, overwrite)
    else:
        from cnnlab.compress.distill import distill_run

        run = distill_run(parent, Run.load(distill), out_dir, temperature, alpha, epochs, overwrite, quiet)  # type: ignore[arg-type]
    report = compress_report(parent, run)
    if as_json:
        emit(report)
        return
    console.print(table(f"{report['method']}: {parent.name} -> {run.name}", ["run", "test accuracy", *SIZE_HEADER[1:]],
                        [[name, _pct(report["accuracy"][name]), *row[1:]]
                         for name, row in zip(("parent", "derived"), _size_rows(report["size"]))]))
    console.print(f"{report['summary']}\nrun: {run.path}")
