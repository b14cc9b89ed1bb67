"""Use a trained run: `cnnlab evaluate` on a split, `cnnlab predict` on image files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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
    coco_results: Annotated[Path | None, typer.Option(
        metavar="FILE.json",
        help="Detection, segmentation: also write the predictions in COCO results format (and the split's "
             "targets as FILE-ground-truth.json).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The task's scores on a split and its pictures: accuracy, per-class precision/recall/F1,
    confusion matrix and mistakes; mIoU, pixel and class accuracy and masks; mAP, per-class AP
    and boxes with precision-recall curves."""
    from cnnlab.publish.evaluation import evaluate_run
    from cnnlab.run import Run

    run = Run.load(run_dir, weights=weights)
    result, dataset, files = evaluate_run(run, data, split, weights, on_corrupt, coco_results)
    if as_json:
        emit({**result, "files": {k: str(v) for k, v in files.items()}})
        return
    if run.task.name in ("classify", "video"):  # a class per image or per clip
        print_classification(result, dataset.name, split)
    else:
        print_scores(result, run.task.name, run.task.score, dataset.name, split)
    for name, path in files.items():
        console.print(f"{name}: {path}")


def print_classification(result: dict[str, Any], data: str, split: str) -> None:
    rows = [[name, f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", s["support"]]
            for name, s in result["per_class"].items()]
    console.print(f"accuracy [bold]{result['accuracy']:.4f}[/] on {result['n']} {split} images of {data}")
    console.print(table("per class", ["class", "precision", "recall", "F1", "support"], rows))
    console.print(table("most confused", ["true", "predicted as", "count"],
                        [[m["true"], m["predicted"], m["count"]] for m in result["most_confused"]]))


def print_scores(result: dict[str, Any], task: str, score: str, data: str, split: str) -> None:
    from cnnlab.publish.evaluation import headline, number, per_class_table

    (name, value), *others = headline(result, score)
    console.print(f"{name} [bold]{number(value)}[/] on the {split} images of {data}; "
                  + ", ".join(f"{n} {number(v)}" for n, v in others))
    console.print(table("per class (n/a: the class is absent from the split)", *per_class_table(result, task)))


def predict(
    run_dir: RunArg,
    images: Annotated[list[Path], typer.Argument(metavar="IMG...", help="Image files (PNG, JPEG, ...).")],
    k: Annotated[int, typer.Option("-k", "--top", help="How many classes to show per image.")] = 3,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Detection, segmentation: folder for the pictures (default: RUN/predict).")] = None,
    weights: Weights = "model",
    as_json: JsonFlag = False,
) -> None:
    """Top-k classes with probabilities, boxes with class and score, a mask, or body joints, for
    image files (converted to the run's input); boxes, masks and skeletons are also drawn into PNGs."""
    from cnnlab.run import Run

    if k < 1:
        raise CnnlabError("-k must be at least 1.")
    results = Run.load(run_dir, weights=weights).predict_files(images, k, out_dir)
    if as_json:
        emit({"predictions": results})
        return
    for r in results:
        if "top" in r:
            rows = [[t["class"], f"{t['probability']:.4f}"] for t in r["top"]]
            console.print(table(r["image"], ["class", "probability"], rows))
        elif "boxes" in r:
            rows = [[b["class"], f"{b['score']:.3f}", ", ".join(f"{v:.1f}" for v in b["box"])] for b in r["boxes"]]
            console.print(table(r["image"], ["class", "score", "box x1, y1, x2, y2"], rows))
        elif "joints" in r:
            rows = [[name, f"{x:.1f}", f"{y:.1f}"] for name, (x, y) in r["joints"].items()]
            console.print(table(r["image"], ["joint", "x", "y"], rows))
        elif "real" in r:  # a GAN's discriminator: how real each image looks to it
            real = r["real"] if isinstance(r["real"], dict) else {"(unconditional)": r["real"]}
            console.print(table(r["image"], ["class", "D(x): probability real"], [[c, f"{p:.4f}"] for c, p in real.items()]))
        else:
            rows = [[c, f"{100 * share:.1f}%"] for c, share in r["pixels"].items()]
            console.print(table(r["image"], ["class", "pixels"], rows))
            console.print(f"mask: {r['mask']}")
        if "picture" in r:
            console.print(f"picture: {r['picture']}")
