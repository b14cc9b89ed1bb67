"""Why a run predicts what it does: `cnnlab explain` (attribution maps, their sanity checks) and
`cnnlab influence` (the training images behind a prediction, TracIn)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cnnlab.cli.options import RunArg, Weights
from cnnlab.cli.output import JsonFlag, console, emit, table
from cnnlab.errors import CnnlabError


def explain(
    run_dir: RunArg,
    images: Annotated[list[Path] | None, typer.Argument(metavar="IMG...", help="Image files to explain.")] = None,
    method: Annotated[str, typer.Option(
        help="saliency, integrated-gradients, gradcam, occlusion, a comma list, or all.")] = "all",
    target: Annotated[str | None, typer.Option(help="Explain this class (name or index) instead of the predicted one.")] = None,
    layer: Annotated[str | None, typer.Option(
        help="Grad-CAM layer (a module name); default: the last conv of the backbone.")] = None,
    box: Annotated[int, typer.Option("--box", help="Detection runs: explain the K-th detected box (0: the top one).")] = 0,
    sanity: Annotated[bool, typer.Option("--sanity", help="Run the randomization and deletion checks on test images.")] = False,
    n: Annotated[int, typer.Option("--n", help="--sanity: how many test images (picked at random, seeded).")] = 32,
    seed: Annotated[int, typer.Option(help="--sanity: seed of the sample and of the re-initialised model.")] = 0,
    weights: Weights = "model",
    out_file: Annotated[Path | None, typer.Option(
        "--out", help="Grid PNG to write (default RUN/explain/attributions.png).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Which pixels made the prediction: a PNG grid of heatmaps per method; --sanity: can they be trusted.
    A detection run: Grad-CAM of one detected box's score; a segmentation run: of a class over its pixels."""
    from cnnlab.explain.runs import explain_files, parse_methods, sanity_run
    from cnnlab.explain.sanity import FLAG_RHO
    from cnnlab.run import Run

    methods = parse_methods(method)
    if n < 1:
        raise CnnlabError("--n must be at least 1.")
    run = Run.load(run_dir, weights=weights)
    if sanity:
        record = sanity_run(run, n, seed, layer)
        if as_json:
            emit(record)
            return
        rows = [[m["method"], f"{m['randomization_rho']:.3f}", "FLAGGED" if m["randomization_flagged"] else "ok",
                 f"{m['deletion_auc']:.3f}", f"{record['random_auc']:.3f}"] for m in record["methods"]]
        console.print(table(f"sanity checks on {record['n']} test images of {run.name}",
                            ["method", "rank corr. vs random model", f"flag (>= {FLAG_RHO})", "deletion AUC", "random AUC"],
                            rows))
        console.print("lower deletion AUC than random = the map found pixels the prediction needs")
    else:
        if box < 0:
            raise CnnlabError("--box must be 0 (the top box) or more.")
        record = explain_files(run, images or [], methods, target, layer, out_file, box)
        if as_json:
            emit(record)
            return
        if "task" in record:
            _print_task_explanation(run.name, record)
        else:
            _print_explanation(run.name, record)
    for name, path in record["files"].items():
        console.print(f"{name}: {path}")


def _print_explanation(run_name: str, record: dict[str, Any]) -> None:
    rows = [[Path(r["image"]).name, r["predicted"], f"{r['probability']:.3f}", r["explained_class"],
             " ".join(f"{m}@{s['peak'][0]},{s['peak'][1]}" for m, s in r["methods"].items())] for r in record["images"]]
    console.print(table(f"explanations by {run_name}",
                        ["image", "predicted", "probability", "explained", "peak (row,col)"], rows))


def _print_task_explanation(run_name: str, record: dict[str, Any]) -> None:
    if record["task"] == "detect":
        rows = [[Path(r["image"]).name, f"{r['rank']}: {r['class']} {r['score']:.3f}",
                 "[" + ", ".join(f"{v:.0f}" for v in r["box"]) + "]", f"{r['share_inside_box']:.0%}"]
                for r in record["images"]]
        head = ["image", "box (rank: class score)", "x1, y1, x2, y2", "Grad-CAM inside the box"]
    else:
        rows = [[Path(r["image"]).name, r["class"], r["region_pixels"], f"{r['share_inside_region']:.0%}"]
                for r in record["images"]]
        head = ["image", "class", "its pixels", "Grad-CAM inside them"]
    console.print(table(f"Grad-CAM by {run_name}", head, rows))


def influence(
    run_dir: RunArg,
    image: Annotated[Path | None, typer.Option(
        help="Find the training images that most support / oppose this prediction.")] = None,
    self_rank: Annotated[bool, typer.Option(
        "--self", help="Rank training images by self-influence (mislabel candidates).")] = False,
    k: Annotated[int, typer.Option("-k", help="How many training images to show.")] = 8,
    as_json: JsonFlag = False,
) -> None:
    """TracIn influence of training images (needs a run trained with --keep-checkpoints)."""
    from cnnlab.explain.runs import influence_run, self_influence_run
    from cnnlab.run import Run

    if (image is None) == (not self_rank):
        raise CnnlabError("give either --image IMG (influence on one prediction) or --self (self-influence ranking).")
    if k < 1:
        raise CnnlabError("-k must be at least 1.")
    run = Run.load(run_dir)
    if self_rank:
        record = self_influence_run(run, k)
        if as_json:
            emit(record)
            return
        rows = [[r["index"], r["label"], f"{r['self_influence']:.4g}"] for r in record["top"]]
        console.print(table(f"highest self-influence of {record['train_images']} training images "
                            f"(median {record['median']:.3g}; check these labels first)",
                            ["index", "label", "self-influence"], rows))
    else:
        record = influence_run(run, image, k)
        if as_json:
            emit(record)
            return
        console.print(f"{image}: predicted [bold]{record['predicted']}[/] ({record['probability']:.3f}); "
                      f"TracIn over {len(record['checkpoints'])} checkpoints")
        for group in ("proponents", "opponents"):
            rows = [[r["index"], r["label"], f"{r['influence']:+.4g}"] for r in record[group]]
            console.print(table(group, ["training index", "label", "influence"], rows))
    for name, path in record["files"].items():
        console.print(f"{name}: {path}")
