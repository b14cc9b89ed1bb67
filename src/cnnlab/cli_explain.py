"""Commands of issue #4 (interpretability): `cnnlab explain`, `cnnlab influence` and
`cnnlab experiment label-noise`.

Thin: parse, call `cnnlab.explain`, print a table or one JSON document.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cnnlab.cli import JsonFlag, _emit, _table, app, experiment, out
from cnnlab.errors import CnnlabError

RunArg = Annotated[Path, typer.Argument(metavar="RUN", help="A run directory.")]


@app.command()
def explain(
    run_dir: RunArg,
    images: Annotated[Optional[list[Path]], typer.Argument(metavar="IMG...", help="Image files to explain.")] = None,
    method: Annotated[str, typer.Option(help="saliency, integrated-gradients, gradcam, occlusion, a comma list, or all.")] = "all",
    target: Annotated[Optional[str], typer.Option(help="Explain this class (name or index) instead of the predicted one.")] = None,
    layer: Annotated[Optional[str], typer.Option(help="Grad-CAM layer (a module name); default: the last conv.")] = None,
    sanity: Annotated[bool, typer.Option("--sanity", help="Run the randomization and deletion checks on test images.")] = False,
    n: Annotated[int, typer.Option("--n", help="--sanity: how many test images (picked at random, seeded).")] = 32,
    seed: Annotated[int, typer.Option(help="--sanity: seed of the sample and of the re-initialised model.")] = 0,
    weights: Annotated[str, typer.Option(help="model (last epoch) or best.")] = "model",
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Grid PNG to write (default RUN/explain/attributions.png).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Which pixels made the prediction: a PNG grid of heatmaps per method; --sanity: can they be trusted."""
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
            _emit(record)
            return
        rows = [[m["method"], f"{m['randomization_rho']:.3f}", "FLAGGED" if m["randomization_flagged"] else "ok",
                 f"{m['deletion_auc']:.3f}", f"{record['random_auc']:.3f}"] for m in record["methods"]]
        out.print(_table(f"sanity checks on {record['n']} test images of {run.name}",
                         ["method", "rank corr. vs random model", f"flag (>= {FLAG_RHO})", "deletion AUC", "random AUC"], rows))
        out.print("lower deletion AUC than random = the map found pixels the prediction needs")
    else:
        record = explain_files(run, images or [], methods, target, layer, out_file)
        if as_json:
            _emit(record)
            return
        rows = [[Path(r["image"]).name, r["predicted"], f"{r['probability']:.3f}", r["explained_class"],
                 " ".join(f"{m}@{s['peak'][0]},{s['peak'][1]}" for m, s in r["methods"].items())] for r in record["images"]]
        out.print(_table(f"explanations by {run.name}", ["image", "predicted", "probability", "explained", "peak (row,col)"], rows))
    for name, path in record["files"].items():
        out.print(f"{name}: {path}")


@app.command()
def influence(
    run_dir: RunArg,
    image: Annotated[Optional[Path], typer.Option(help="Find the training images that most support / oppose this prediction.")] = None,
    self_rank: Annotated[bool, typer.Option("--self", help="Rank training images by self-influence (mislabel candidates).")] = False,
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
            _emit(record)
            return
        rows = [[r["index"], r["label"], f"{r['self_influence']:.4g}"] for r in record["top"]]
        out.print(_table(f"highest self-influence of {record['train_images']} training images "
                         f"(median {record['median']:.3g}; check these labels first)", ["index", "label", "self-influence"], rows))
    else:
        record = influence_run(run, image, k)
        if as_json:
            _emit(record)
            return
        out.print(f"{image}: predicted [bold]{record['predicted']}[/] ({record['probability']:.3f}); "
                  f"TracIn over {len(record['checkpoints'])} checkpoints")
        for group in ("proponents", "opponents"):
            rows = [[r["index"], r["label"], f"{r['influence']:+.4g}"] for r in record[group]]
            out.print(_table(group, ["training index", "label", "influence"], rows))
    for name, path in record["files"].items():
        out.print(f"{name}: {path}")


@experiment.command("label-noise")
def label_noise(
    data: Annotated[str, typer.Option(help="Dataset to corrupt.")] = "fashion-mnist",
    flip: Annotated[float, typer.Option(help="Share of training labels to flip.")] = 0.05,
    model: Annotated[str, typer.Option(help="Model to train.")] = "lenet5",
    epochs: Annotated[int, typer.Option(help="Training epochs (one TracIn checkpoint each).")] = 3,
    batch_size: Annotated[int, typer.Option(help="Images per optimizer step.")] = 128,
    seed: Annotated[int, typer.Option(help="Seed of the flips and of the training.")] = 0,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run directory (default runs/label-noise-DATA).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Flip labels, train, and see whether TracIn self-influence finds them (vs the loss ranking and chance)."""
    from cnnlab.experiments.label_noise import label_noise as run_experiment
    from cnnlab.files import slug

    out_dir = out_dir or Path("runs") / f"label-noise-{slug(data)}"
    result = run_experiment(data, flip, model=model, epochs=epochs, batch_size=batch_size, seed=seed, out=out_dir,
                            quiet=as_json)
    if as_json:
        _emit(result.to_dict())
        return
    rows = [
        ["TracIn self-influence", f"{result.precision_tracin:.3f}", f"{result.precision_tracin / result.base_rate:.1f}x"],
        ["per-example loss", f"{result.precision_loss:.3f}", f"{result.precision_loss / result.base_rate:.1f}x"],
        ["random (base rate)", f"{result.base_rate:.3f}", "1.0x"],
    ]
    out.print(_table(f"flipped labels among the top {result.flipped} of {result.train_images} training images "
                     f"({model} on {data}, {epochs} epochs, test acc {result.test_acc:.4f})", ["ranking", "precision", "vs base rate"], rows))
    out.print(f"trained in {result.train_seconds:.0f} s, ranked in {result.rank_seconds:.1f} s; run: {result.run}")
