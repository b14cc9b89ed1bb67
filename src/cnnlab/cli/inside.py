"""Inside the CNN: `cnnlab conv` (a convolution worked by hand) and `cnnlab show` (a trained
run's filters and feature maps)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cnnlab.cli.options import RunArg, Weights
from cnnlab.cli.output import JsonFlag, console, emit, table
from cnnlab.errors import CnnlabError


def conv(
    example: Annotated[str | None, typer.Option(help="A worked example: lecture (the default without --image).")] = None,
    at: Annotated[str, typer.Option(help="Output cell I,J to work by hand (row, column from 0).")] = "0,0",
    stride: Annotated[int, typer.Option(help="Step of the kernel between output cells.")] = 1,
    padding: Annotated[int | None, typer.Option(help="Zeros around the input (lecture: 1; image: half the kernel).")] = None,
    dilation: Annotated[int, typer.Option(help="Spacing between the kernel's taps (1: none).")] = 1,
    image: Annotated[Path | None, typer.Option(help="Convolve this picture (read as gray) instead.")] = None,
    kernel: Annotated[str, typer.Option(help="With --image: edge, blur, sharpen or a text file of numbers.")] = "edge",
    out_file: Annotated[Path | None, typer.Option(
        "--out", help="With --image: the result PNG (default IMAGE-KERNEL.png).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """A convolution worked by hand: windows, products, sums, bias, the output map and its size."""
    from cnnlab.inside.conv import convolve_image, lecture_example, parse_at

    if image is not None:
        if example is not None:
            raise CnnlabError("give --example or --image, not both.")
        result = convolve_image(image, kernel, out_file, stride=stride, padding=padding, dilation=dilation)
        if as_json:
            emit(result)
            return
        for line in result["formula"]:
            console.print(line)
        console.print(f"{result['kernel']} kernel on {result['image']}: output {result['output_size'][0]}x"
                      f"{result['output_size'][1]}, values {result['min']:.3f} .. {result['max']:.3f}")
        console.print(f"saved: {result['out']}")
        return
    if (example or "lecture") != "lecture":
        raise CnnlabError(f"unknown example '{example}'; the only worked example is 'lecture' (or give --image).")
    result = lecture_example(parse_at(at), stride=stride, padding=padding, dilation=dilation)
    if as_json:
        emit(result)
        return
    _print_cell(result)


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.3g}"


def _print_cell(r: dict[str, Any]) -> None:
    """One output cell: per input channel its window, kernel and products side by side, then the map."""
    from rich.columns import Columns

    i, j = r["at"]
    c, h, w = r["input_shape"]
    console.print(f"input {c}x{h}x{w}, kernel {'x'.join(map(str, r['kernel_shape']))}, stride {r['stride']}, "
                  f"padding {r['padding']}, dilation {r['dilation']}, bias {_num(r['bias'])}; output cell ({i},{j}):")
    for part in r["channels"]:
        tables = [table(f"{part['channel']} {what}", [""] * len(part[what][0]), [[_num(v) for v in row] for row in part[what]])
                  for what in ("window", "kernel", "products")]
        for t in tables:
            t.show_header = False
        console.print(Columns(tables))
        console.print(f"sum of the {part['channel']} products = [bold]{_num(part['sum'])}[/]")
    console.print(f"output ({i},{j}) = {r['sum']}")
    ho, wo = r["output_size"]
    console.print(table(f"output map {ho}x{wo}", ["row"] + [str(k) for k in range(wo)],
                        [[str(k)] + [_num(v) for v in row] for k, row in enumerate(r["output"])]))
    for line in r["formula"]:
        console.print(line)


def show(
    run_dir: RunArg,
    filters: Annotated[bool, typer.Option("--filters", help="Save the first conv layer's kernels as a grid.")] = False,
    feature_maps: Annotated[list[Path] | None, typer.Option(
        "--feature-maps", metavar="IMG", help="Save every conv layer's activations for this image (repeatable).")] = None,
    weights: Weights = "model",
    as_json: JsonFlag = False,
) -> None:
    """Filters and feature maps of a trained run, as PNG files in RUN/inside/ (and in its report)."""
    from cnnlab.inside.runs import show_run
    from cnnlab.publish import write_report
    from cnnlab.run import Run

    run = Run.load(run_dir, weights=weights)
    doc = show_run(run, filters, feature_maps)
    doc["report"] = str(write_report(run))
    if as_json:
        emit(doc)
        return
    if filters:
        f = doc["filters"]
        console.print(f"filters of {f['layer']} ({'x'.join(map(str, f['shape']))}): {f['file']}")
    for image, layers in doc.get("feature_maps", {}).items():
        console.print(table(f"feature maps of {image}", ["layer", "output", "file"],
                            [[m["layer"], "x".join(map(str, m["shape"])), m["file"]] for m in layers]))
    console.print(f"report: {doc['report']}")
