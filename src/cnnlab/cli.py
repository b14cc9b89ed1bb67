"""The `cnnlab` command: parse, call the Python API, print a table or (with --json) one JSON
document on stdout. Nothing is computed here; heavy imports happen inside each command so
that `cnnlab --help` answers at once.

Errors a user can cause arrive as CnnlabError and are printed, once, as one sentence with a
non-zero exit code (see `main`); `--debug` shows the traceback instead.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from cnnlab.errors import CnnlabError

app = typer.Typer(
    help="Build, train, explain, attack and audit convolutional neural networks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Long paths stay on one line; piped output gets 120 columns, not rich's 80, so tables stay whole.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", 120)))

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]


def _emit(doc: dict[str, Any] | list[Any]) -> None:
    print(json.dumps(doc, indent=2, default=str))


def _table(title: str, header: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for h in header:
        table.add_column(h, justify="left" if h in (header[0], "type", "chosen", "class") else "right")
    for r in rows:
        table.add_row(*(str(c) for c in r))
    return table


def _shape(text: str) -> tuple[int, int, int]:
    try:
        c, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise CnnlabError(f"--input must look like 3x32x32 (channels x height x width), got '{text}'.") from None
    return c, h, w


# Command groups that several analyses fill (see the imports at the end of this file).
experiment = typer.Typer(help="Experiments that reproduce a claim of the lecture on real data.", no_args_is_help=True)
app.add_typer(experiment, name="experiment")


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of an error.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if debug:
        os.environ["CNNLAB_DEBUG"] = "1"
    if version:
        from cnnlab import __version__

        print(__version__)
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        print(ctx.get_help())
        raise typer.Exit()


@app.command()
def quickstart(
    out_dir: Annotated[Path, typer.Option("--out", help="Run directory (replaced if it holds a run).")] = Path("runs/quickstart"),
    as_json: JsonFlag = False,
) -> None:
    """Train LeNet-5 on the embedded digits, evaluate it and write report.html."""
    from cnnlab.quickstart import quickstart as run_quickstart

    run, evaluation, report = run_quickstart(out_dir, quiet=as_json)
    if as_json:
        _emit({"run": str(run.path), "report": str(report), "test_accuracy": evaluation.accuracy})
        return
    out.print(f"test accuracy [bold]{evaluation.accuracy:.4f}[/] on {len(evaluation.y_true)} held-out digits")
    out.print(f"report: {report}")


@app.command()
def train(
    model: Annotated[Optional[str], typer.Option(help="Model name (see `cnnlab models`).")] = None,
    data: Annotated[Optional[str], typer.Option(help="Dataset name, or imagefolder:PATH (see `cnnlab datasets`).")] = None,
    data_dir: Annotated[Optional[str], typer.Option(help="Folder holding (or to receive) the dataset's files.")] = None,
    val_fraction: Annotated[Optional[float], typer.Option(help="Share of training images held out for validation.")] = None,
    image_size: Annotated[Optional[int], typer.Option(help="imagefolder: resize images to this side.")] = None,
    on_corrupt: Annotated[Optional[str], typer.Option(help="imagefolder: skip an undecodable image (named) or error.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Passes over the training images.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Images per optimizer step.")] = None,
    optimizer: Annotated[Optional[str], typer.Option(help="sgd (Nesterov), adam or adamw.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate (default 0.05 for SGD, 1e-3 for Adam).")] = None,
    momentum: Annotated[Optional[float], typer.Option(help="SGD momentum.")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="L2 penalty on weights (not biases or norms).")] = None,
    schedule: Annotated[Optional[str], typer.Option(help="onecycle, cosine, step or none.")] = None,
    label_smoothing: Annotated[Optional[float], typer.Option(help="Label smoothing of the cross-entropy.")] = None,
    augment: Annotated[Optional[str], typer.Option(help="Batch augmentations: crop, flip, crop,flip or none.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the initial weights, batch order and augmentation.")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda or auto.")] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option(help="Also checkpoint every N steps (0: at epoch ends).")] = None,
    keep_checkpoints: Annotated[Optional[bool], typer.Option("--keep-checkpoints", help="Keep every epoch's weights (for `cnnlab influence`).")] = None,
    adversarial: Annotated[Optional[str], typer.Option(help="Adversarial training: pgd or fgsm-rs (with --eps).")] = None,
    eps: Annotated[Optional[float], typer.Option(help="L-inf radius of adversarial training, pixels in [0, 1].")] = None,
    adv_steps: Annotated[Optional[int], typer.Option(help="PGD steps per batch of adversarial training.")] = None,
    mitigate: Annotated[Optional[str], typer.Option(help="Group bias mitigation: reweight or groupdro.")] = None,
    dp: Annotated[Optional[bool], typer.Option("--dp", help="Train with DP-SGD (Opacus).")] = None,
    target_epsilon: Annotated[Optional[float], typer.Option(help="DP: epsilon spent by the end of training.")] = None,
    delta: Annotated[Optional[float], typer.Option(help="DP: delta of (epsilon, delta)-DP.")] = None,
    max_grad_norm: Annotated[Optional[float], typer.Option(help="DP: per-sample gradient clipping norm.")] = None,
    nproc: Annotated[Optional[int], typer.Option(help="Processes training together on this machine (DDP through torchrun); --batch-size stays the global batch.")] = None,
    recipe: Annotated[Optional[str], typer.Option(help="fast: cnnlab's time-to-accuracy choices for the options you do not set.")] = None,
    budget: Annotated[Optional[str], typer.Option(help="Time for the whole command (90s, 2m, 15m): picks the epochs that fit, unless --epochs is given.")] = None,
    tta: Annotated[Optional[bool], typer.Option("--tta/--no-tta", help="Score with flip test-time augmentation.")] = None,
    channels_last: Annotated[Optional[bool], typer.Option("--channels-last/--no-channels-last", help="NHWC memory layout (faster convolutions on CPUs and GPUs).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="A TOML file of the options above (flags win).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run directory (default runs/MODEL-DATA-TIME).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the run already in --out.")] = False,
    resume: Annotated[Optional[Path], typer.Option(help="Continue this interrupted run exactly.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Train a model on a dataset; the run directory records everything (see README)."""
    from dataclasses import replace

    from cnnlab.training import TrainConfig, distributed
    from cnnlab.training import resume as resume_run
    from cnnlab.training import train as train_run
    from cnnlab.training.recipes import parse_budget, process_start

    flags = {k: v for k, v in locals().items() if k in TrainConfig.__dataclass_fields__ and v is not None}
    if budget is not None:
        flags["budget"] = parse_budget(budget)
    if resume is not None:
        if flags or config or out_dir:
            raise CnnlabError(
                f"--resume continues {resume} with its own config.toml; drop the other training options "
                f"({', '.join('--' + k.replace('_', '-') for k in flags) or '--config/--out'})."
            )
        saved = TrainConfig.from_toml(resume / "config.toml") if (resume / "config.toml").is_file() else TrainConfig()
        if (code := distributed.launch_if_several(saved, sys.argv[1:])) is not None:  # as many processes as before
            raise typer.Exit(code)
        run = resume_run(resume, quiet=quiet or as_json)
    else:
        base = TrainConfig.from_toml(config) if config else TrainConfig()
        if (code := distributed.launch_if_several(replace(base, **flags).resolved(), sys.argv[1:])) is not None:
            raise typer.Exit(code)
        run = train_run(base, out=out_dir, overwrite=overwrite, quiet=quiet or as_json, started=process_start(), **flags)
    if not distributed.context().is_main:  # rank 0 reports for all of them
        return
    test = next(m for m in reversed(run.metrics()) if m.get("event") == "test")
    if as_json:
        _emit({"run": str(run.path), "config": run.config.to_dict(), **test})
        return
    out.print(f"test accuracy [bold]{test['test_acc']:.4f}[/] (loss {test['test_loss']:.4f}); run saved in {run.path}")


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory.")],
    data: Annotated[Optional[str], typer.Option(help="Evaluate on this dataset instead of the run's own.")] = None,
    on_corrupt: Annotated[str, typer.Option(help="imagefolder: skip an undecodable image (named) or error.")] = "skip",
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    weights: Annotated[str, typer.Option(help="model (last epoch) or best (best validation epoch).")] = "model",
    as_json: JsonFlag = False,
) -> None:
    """Accuracy, per-class precision/recall/F1, confusion matrix and misclassified examples."""
    from cnnlab import energy
    from cnnlab.data import load_data
    from cnnlab.report import evaluation_dir, save_evaluation
    from cnnlab.run import Run

    run = Run.load(run_dir, weights=weights)
    # another image folder is resized to the run's input; its channels and classes must fit
    dataset = load_data(data, image_size=run.input_shape[1], on_corrupt=on_corrupt) if data else run.load_data()
    with energy.track(run.path, f"evaluation ({dataset.name} {split})"):
        evaluation = run.evaluate(dataset, split)
    files = save_evaluation(evaluation, dataset.splits()[split].x, evaluation_dir(run, data, split, weights))
    if as_json:
        _emit({**evaluation.to_dict(), "files": {k: str(v) for k, v in files.items()}})
        return
    c = evaluation.classes
    rows = [[name, f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", s["support"]] for name, s in zip(c, evaluation.per_class)]
    out.print(f"accuracy [bold]{evaluation.accuracy:.4f}[/] on {len(evaluation.y_true)} {split} images of {dataset.name}")
    out.print(_table("per class", ["class", "precision", "recall", "F1", "support"], rows))
    out.print(_table("most confused", ["true", "predicted as", "count"], [[c[t], c[p], n] for t, p, n in evaluation.most_confused]))
    for name, path in files.items():
        out.print(f"{name}: {path}")


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory.")],
    images: Annotated[list[Path], typer.Argument(metavar="IMG...", help="Image files (PNG, JPEG, ...).")],
    k: Annotated[int, typer.Option("-k", "--top", help="How many classes to show per image.")] = 3,
    weights: Annotated[str, typer.Option(help="model (last epoch) or best.")] = "model",
    as_json: JsonFlag = False,
) -> None:
    """Top-k classes with probabilities for image files (converted to the run's input)."""
    from cnnlab.run import Run

    if k < 1:
        raise CnnlabError("-k must be at least 1.")
    results = Run.load(run_dir, weights=weights).predict_files(images, k)
    if as_json:
        _emit({"predictions": results})
        return
    for r in results:
        out.print(_table(r["image"], ["class", "probability"], [[t["class"], f"{t['probability']:.4f}"] for t in r["top"]]))


@app.command()
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
        shape = _shape(input_shape)
        with torch.device("meta"):  # shapes and counts need no memory, even for VGG-16
            model = build_model(target, shape, classes)
        s = summarize(model, shape, target)
    if as_json:
        _emit(s.to_dict())
        return
    rows = [[l.name, l.type, l.chosen, "x".join(map(str, l.output_shape)), f"{l.params:,}", f"{l.flops:,}"] for l in s.layers]
    out.print(_table(f"{s.model} on {'x'.join(map(str, s.input_shape))}", ["layer", "type", "chosen", "output", "learned", "FLOPs"], rows))
    out.print(f"learned parameters [bold]{s.params:,}[/] ({s.trainable:,} trainable), buffers {s.buffers:,}, "
              f"forward FLOPs per image {s.flops:,}")
    if s.hyperparameters:
        out.print(_table("chosen hyperparameters (config.toml)", ["name", "value"], [[k, v] for k, v in s.hyperparameters.items()]))


@app.command()
def models(as_json: JsonFlag = False) -> None:
    """The model registry: names, papers, parameter counts at the paper's input."""
    from cnnlab.models import model_entries

    entries = [
        {"name": e.name, "family": e.family, "paper": e.paper, "reference_input": "x".join(map(str, e.reference_input)),
         "reference_classes": e.reference_classes, "reference_params": e.reference_params}
        for e in model_entries()
    ]
    if as_json:
        _emit({"models": entries})
        return
    rows = [[e["name"], e["paper"], f"{e['reference_input']} -> {e['reference_classes']}", f"{e['reference_params']:,}"] for e in entries]
    out.print(_table("models", ["name", "paper", "reference input", "parameters"], rows))


@app.command()
def datasets(as_json: JsonFlag = False) -> None:
    """The dataset registry and where each dataset comes from."""
    from cnnlab.data import dataset_entries

    entries = [{"name": e.name + (":PATH" if e.takes_arg else ""), "description": e.description} for e in dataset_entries()]
    if as_json:
        _emit({"datasets": entries})
        return
    out.print(_table("datasets", ["name", "description"], [[e["name"], e["description"]] for e in entries]))


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory.")],
    as_json: JsonFlag = False,
) -> None:
    """(Re)write RUN/report.html from what the run holds (run `cnnlab evaluate` first for its test section)."""
    from cnnlab.report import write_report
    from cnnlab.run import Run

    path = write_report(Run.load(run_dir))
    if as_json:
        _emit({"report": str(path)})
        return
    out.print(f"report: {path}")


def main() -> None:
    """Entry point: run the command; a user's error becomes one line on stderr and exit 1."""
    try:
        app()
    except CnnlabError as e:
        if os.environ.get("CNNLAB_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 1))
    except KeyboardInterrupt:
        print("interrupted.", file=sys.stderr)
        sys.exit(130)
    except OSError as e:  # a path the user gave: missing, unwritable, disk full
        if os.environ.get("CNNLAB_DEBUG"):
            raise
        where = f": {e.filename}" if e.filename else ""
        print(f"error: {e.strerror or e}{where}.", file=sys.stderr)
        sys.exit(1)


# Each area's commands live beside it; importing the module registers them on `app`.
from cnnlab import cli_inside, cli_explain, cli_attack, cli_audit, cli_serve, cli_bench  # noqa: E402,F401
