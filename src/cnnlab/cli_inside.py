"""Commands of issue #3 (inside the CNN): `cnnlab conv`, `cnnlab scratch train`,
`cnnlab experiment mlp-vs-cnn`, `cnnlab show`.

Thin: parse, call `cnnlab.inside` / `cnnlab.scratch`, print a table or one JSON document.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cnnlab.cli import JsonFlag, _emit, _table, app, experiment, out
from cnnlab.errors import CnnlabError


@experiment.command("mlp-vs-cnn")
def mlp_vs_cnn(
    data: Annotated[str, typer.Option(help="Dataset (fashion-mnist, digits, ...).")] = "fashion-mnist",
    epochs: Annotated[int, typer.Option(help="Epochs of each of the four trainings.")] = 3,
    mlp: Annotated[str, typer.Option(help="The fully connected model.")] = "mlp",
    cnn: Annotated[str, typer.Option(help="The convolutional model.")] = "lenet5",
    seed: Annotated[int, typer.Option(help="Seed of the trainings and of the pixel permutation.")] = 0,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Folder for the four runs (default runs/mlp-vs-cnn-DATA).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the experiment already in --out.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Parameters of an MLP vs a CNN, and the fixed pixel-permutation test (MLP unmoved, CNN drops)."""
    from cnnlab.data import load_data
    from cnnlab.files import slug
    from cnnlab.experiments.mlp_vs_cnn import mlp_vs_cnn as run_experiment

    dataset = load_data(data)
    record = run_experiment(dataset, out_dir or Path("runs") / f"mlp-vs-cnn-{slug(data)}", mlp=mlp, cnn=cnn,
                            epochs=epochs, seed=seed, overwrite=overwrite, quiet=quiet or as_json)
    if as_json:
        _emit(record)
        return
    c, h, w = record["input_shape"]
    out.print(_table(f"parameters for {c}x{h}x{w} images", ["model", "layer", "formula", "params", "whole model"],
                     [[p["model"], p["layer"], p["formula"], f"{p['params']:,}", f"{p['total']:,}"] for p in record["parameters"]]))
    rows = [[m, f"{a['original']:.4f}", f"{a['permuted']:.4f}", f"{a['change_points']:+.2f}"] for m, a in record["accuracy"].items()]
    out.print(_table(f"test accuracy on {record['data']}, {record['epochs']} epochs, one fixed pixel permutation",
                     ["model", "original", "permuted", "change (points)"], rows))
    for name, path in record["files"].items():
        out.print(f"{name}: {path}")


@app.command()
def conv(
    example: Annotated[Optional[str], typer.Option(help="A worked example: lecture (the default without --image).")] = None,
    at: Annotated[str, typer.Option(help="Output cell I,J to work by hand (row, column from 0).")] = "0,0",
    stride: Annotated[int, typer.Option(help="Step of the kernel between output cells.")] = 1,
    padding: Annotated[Optional[int], typer.Option(help="Zeros around the input (lecture: 1; image: half the kernel).")] = None,
    dilation: Annotated[int, typer.Option(help="Spacing between the kernel's taps (1: none).")] = 1,
    image: Annotated[Optional[Path], typer.Option(help="Convolve this picture (read as gray) instead.")] = None,
    kernel: Annotated[str, typer.Option(help="With --image: edge, blur, sharpen or a text file of numbers.")] = "edge",
    out_file: Annotated[Optional[Path], typer.Option("--out", help="With --image: the result PNG (default IMAGE-KERNEL.png).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """A convolution worked by hand: windows, products, sums, bias, the output map and its size."""
    from cnnlab.inside.conv import convolve_image, lecture_example, parse_at

    if image is not None:
        if example is not None:
            raise CnnlabError("give --example or --image, not both.")
        result = convolve_image(image, kernel, out_file, stride=stride, padding=padding, dilation=dilation)
        if as_json:
            _emit(result)
            return
        for line in result["formula"]:
            out.print(line)
        out.print(f"{result['kernel']} kernel on {result['image']}: output {result['output_size'][0]}x"
                  f"{result['output_size'][1]}, values {result['min']:.3f} .. {result['max']:.3f}")
        out.print(f"saved: {result['out']}")
        return
    if (example or "lecture") != "lecture":
        raise CnnlabError(f"unknown example '{example}'; the only worked example is 'lecture' (or give --image).")
    result = lecture_example(parse_at(at), stride=stride, padding=padding, dilation=dilation)
    if as_json:
        _emit(result)
        return
    _print_cell(result)


def _print_cell(r: dict) -> None:
    from rich.columns import Columns

    fmt = lambda v: str(int(v)) if float(v).is_integer() else f"{v:.3g}"  # noqa: E731
    i, j = r["at"]
    c, h, w = r["input_shape"]
    out.print(f"input {c}x{h}x{w}, kernel {'x'.join(map(str, r['kernel_shape']))}, stride {r['stride']}, "
              f"padding {r['padding']}, dilation {r['dilation']}, bias {fmt(r['bias'])}; output cell ({i},{j}):")
    for part in r["channels"]:
        tables = [_table(f"{part['channel']} {what}", [""] * len(part[key][0]), [[fmt(v) for v in row] for row in part[key]])
                  for what, key in (("window", "window"), ("kernel", "kernel"), ("products", "products"))]
        for t in tables:
            t.show_header = False
        out.print(Columns(tables))
        out.print(f"sum of the {part['channel']} products = [bold]{fmt(part['sum'])}[/]")
    out.print(f"output ({i},{j}) = {r['sum']}")
    ho, wo = r["output_size"]
    out.print(_table(f"output map {ho}x{wo}", ["row"] + [str(k) for k in range(wo)],
                     [[str(k)] + [fmt(v) for v in row] for k, row in enumerate(r["output"])]))
    for line in r["formula"]:
        out.print(line)


scratch = typer.Typer(help="The CNN written in NumPy only (cnnlab.scratch).", no_args_is_help=True)
app.add_typer(scratch, name="scratch")


@scratch.command("train")
def scratch_train(
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
        _emit({"data": data, "model": "lenet5 (numpy)", "impl": impl, **result.to_dict()})
        return
    out.print(f"NumPy LeNet-5 ({result.parameters:,} parameters, {impl}): test accuracy [bold]{result.test_acc:.4f}[/] "
              f"(loss {result.test_loss:.4f}) on {len(dataset.test)} {data} images, {result.seconds:.1f} s")


@app.command()
def show(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory.")],
    filters: Annotated[bool, typer.Option("--filters", help="Save the first conv layer's kernels as a grid.")] = False,
    feature_maps: Annotated[Optional[list[Path]], typer.Option("--feature-maps", metavar="IMG", help="Save every conv layer's activations for this image (repeatable).")] = None,
    weights: Annotated[str, typer.Option(help="model (last epoch) or best.")] = "model",
    as_json: JsonFlag = False,
) -> None:
    """Filters and feature maps of a trained run, as PNG files in RUN/inside/ (and in its report)."""
    from cnnlab.data.images import read_image
    from cnnlab.inside.pictures import INSIDE, save_feature_maps, save_filters
    from cnnlab.report import write_report
    from cnnlab.run import Run

    if not filters and not feature_maps:
        raise CnnlabError("say what to show: --filters and/or --feature-maps IMG.")
    run = Run.load(run_dir, weights=weights)
    c, h, w = run.input_shape
    images = [(p, read_image(p, c, (h, w))) for p in feature_maps or []]  # every file is checked before any work
    folder = run.path / INSIDE
    doc: dict = {"run": str(run.path)}
    if filters:
        path, info = save_filters(run.model, folder)
        doc["filters"] = {"file": str(path), **info}
    if images:
        doc["feature_maps"] = {str(p): save_feature_maps(run.model, x, p.stem, folder) for p, x in images}
    doc["report"] = str(write_report(run))
    if as_json:
        _emit(doc)
        return
    if filters:
        f = doc["filters"]
        out.print(f"filters of {f['layer']} ({'x'.join(map(str, f['shape']))}): {f['file']}")
    for image, layers in doc.get("feature_maps", {}).items():
        out.print(_table(f"feature maps of {image}", ["layer", "output", "file"],
                         [[m["layer"], "x".join(map(str, m["shape"])), m["file"]] for m in layers]))
    out.print(f"report: {doc['report']}")
