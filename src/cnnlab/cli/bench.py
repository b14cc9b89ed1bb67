"""`cnnlab bench RUN|MODEL`: training FLOP/s against this machine's peak (cnnlab.bench)."""

from __future__ import annotations

from typing import Annotated

import typer

from cnnlab.cli.options import parse_shape
from cnnlab.cli.output import JsonFlag, console, emit, table


def bench(
    target: Annotated[str, typer.Argument(metavar="RUN|MODEL", help="A run directory or a model name.")],
    data: Annotated[str | None, typer.Option(help="Take the input shape and classes of this dataset (model name only).")] = None,
    input_shape: Annotated[str | None, typer.Option("--input", help="Input CxHxW for a model name (default 1x28x28).")] = None,
    classes: Annotated[int, typer.Option(help="Number of classes for a model name with --input.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Images per training step.")] = 256,
    steps: Annotated[int, typer.Option(help="Timed training steps (after 3 warm-up steps).")] = 10,
    threads: Annotated[int | None, typer.Option(help="torch threads (default: torch's choice).")] = None,
    channels_last: Annotated[bool | None, typer.Option(
        "--channels-last/--no-channels-last",
        help="Model and batch in channels_last memory format (default: as the run trained; NCHW for a model name).")] = None,
    clock: Annotated[str, typer.Option(
        help="wall, or cpu: process CPU time, for a busy machine (use with --threads 1).")] = "wall",
    as_json: JsonFlag = False,
) -> None:
    """Training FLOP/s against this machine's measured fp32 matmul peak, and where the step's time goes."""
    from cnnlab.bench import bench_target

    r = bench_target(target, data=data, input_shape=parse_shape(input_shape) if input_shape else None, classes=classes,
                     threads=threads, channels_last=channels_last, batch_size=batch_size, steps=steps, clock=clock)
    if as_json:
        emit(r.to_dict())
        return
    p = r.peak
    layout = "channels_last" if r.channels_last else "contiguous (NCHW)"
    console.print(f"{r.model} on {'x'.join(map(str, r.input_shape))}, batch {r.batch_size}, {layout}, {r.threads} threads, "
                  f"torch {r.torch} ({r.cpu_capability})"
                  + (", times are process CPU seconds" if r.clock == "cpu" else ""))
    console.print(f"fp32 matmul peak [bold]{p.gflops:.1f}[/] GFLOP/s ({p.n}x{p.n}, best of 3)")
    console.print(f"training step: [bold]{r.images_per_s:,.0f}[/] images/s, {r.flops_per_step / 1e9:.3f} GFLOP per step "
                  f"(forward + backward), [bold]{r.gflops:.1f}[/] GFLOP/s = [bold]{r.fraction_of_peak:.0%}[/] of peak "
                  f"(best of {r.steps} steps: {r.step_seconds * 1e3:.1f} ms, median {r.step_seconds_median * 1e3:.1f} ms)")
    rows = [[k.kind, f"{k.ms:.1f}", f"{k.share:.0%}", f"{k.flops / 1e9:.3f}" if k.flops else "",
             f"{k.gflops:.1f}" if k.flops else "", f"{k.fraction_of_peak:.0%}" if k.flops else ""] for k in r.breakdown]
    console.print(table(f"where the step's {r.step_seconds * 1e3:.1f} ms go (shares from torch.profiler over 3 more steps)",
                        ["kind", "ms", "share", "GFLOP", "GFLOP/s", "of peak"], rows))
    console.print(table("layers as matrix products (forward; backward does two more of the same size)",
                        ["layer", "type", "M", "K", "N", "GFLOP"],
                        [[g.layer, g.type, f"{g.m:,}", g.k, g.n, f"{g.flops / 1e9:.3f}"] for g in r.gemms]))
