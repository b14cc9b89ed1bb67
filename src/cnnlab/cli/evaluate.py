"""Use a trained run: `cnnlab evaluate` on a split, `cnnlab predict` on image files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli.options import RunArg, Weights
from cnnlab.cli.output import JsonFlag, console, emit, table
from cnnlab.errors import CnnlabError


def evaluate(
    run_dir: RunArg,
    data: Annotated[str | None, typer.Option(help="Evaluate on this dataset instead of the run's own.")] = None,
    on_corrupt: Annotated[str, typer.Option(help="imagefolder: skip an undecodable image (named) or error.")] = "skip",
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    weights: Weights = "model",
    as_json: JsonFlag = False,
) -> None:
    """Accuracy, per-class precision/recall/F1, confusion matrix and misclassified examples."""
    from cnnlab.publish.evaluation import evaluate_run
    from cnnlab.run import Run

    evaluation, dataset, files = evaluate_run(Run.load(run_dir, weights=weights), data, split, weights, on_corrupt)
    if as_json:
        emit({**evaluation.to_dict(), "files": {k: str(v) for k, v in files.items()}})
        return
    c = evaluation.classes
    rows = [[name, f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", s["support"]]
            for name, s in zip(c, evaluation.per_class, strict=True)]
    console.print(f"accuracy [bold]{evaluation.accuracy:.4f}[/] on {len(evaluation.y_true)} {split} images of {dataset.name}")
    console.print(table("per class", ["class", "precision", "recall", "F1", "support"], rows))
    console.print(table("most confused", ["true", "predicted as", "count"],
                        [[c[t], c[p], n] for t, p, n in evaluation.most_confused]))
    for name, path in files.items():
        console.print(f"{name}: {path}")


def predict(
    run_dir: RunArg,
    images: Annotated[list[Path], typer.Argument(metavar="IMG...", help="Image files (PNG, JPEG, ...).")],
    k: Annotated[int, typer.Option("-k", "--top", help="How many classes to show per image.")] = 3,
    weights: Weights = "model",
    as_json: JsonFlag = False,
) -> None:
    """Top-k classes with probabilities for image files (converted to the run's input)."""
    from cnnlab.run import Run

    if k < 1:
        raise CnnlabError("-k must be at least 1.")
    results = Run.load(run_dir, weights=weights).predict_files(images, k)
    if as_json:
        emit({"predictions": results})
        return
    for r in results:
        console.print(table(r["image"], ["class", "probability"], [[t["class"], f"{t['probability']:.4f}"] for t in r["top"]]))
