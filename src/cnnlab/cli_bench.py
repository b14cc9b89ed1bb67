"""Command of issue #7 (hardware utilisation): `cnnlab bench RUN|MODEL`.

Thin: find the model and its input, call `cnnlab.bench.bench`, print tables or one JSON document.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cnnlab.cli import JsonFlag, _emit, _shape, _table, app, out
from cnnlab.errors import CnnlabError


@app.command()
def bench(
    target: Annotated[str, typer.Argument(metavar="RUN|MODEL", help="A run directory or a model name.")],
    data: Annotated[Optional[str], typer.Option(help="Take the input shape and classes of this dataset (model name only).")] = None,
    input_shape: Annotated[Optional[str], typer.Option("--input", help="Input CxHxW for a model name (default 1x28x28).")] = None,
    classes: Annotated[int, typer.Option(help="Number of classes for a model name with --input.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Images per training step.")] = 256,
    steps: Annotated[int, typer.Option(help="Timed training steps (after 3 warm-up steps).")] = 10,
    threads: Annotated[Optional[int], typer.Option(help="torch threads (default: torch's choice).")] = None,
    channels_last: Annotated[Optional[bool], typer.Option("--channels-last/--no-channels-last", help="Model and batch in channels_last memory format (default: as the run trained; NCHW for a model name).")] = None,
    clock: Annotated[str, typer.Option(help="wall, or cpu: process CPU time, for a busy machine (use with --threads 1).")] = "wall",
    as_json: JsonFlag = False,
) -> None:
    """Training FLOP/s against this machine's measured fp32 matmul peak, and where the step's time goes."""
    import torch

    from cnnlab.bench import bench as run_bench
    from cnnlab.models import build_model
    from cnnlab.run import Run

    if threads is not None and threads < 1:
        raise CnnlabError(f"--threads must be at least 1 (got {threads}).")
    if (Path(target) / "config.toml").is_file():
        if data or input_shape:
            raise CnnlabError(f"{target} is a run: its model fixes the input, so drop --data/--input.")
        run = Run.load(target)
        model, shape, n_classes, name, source = run.model, run.input_shape, len(run.classes), run.config.model, str(run.path)
        channels_last = run.config.channels_last if channels_last is None else channels_last
    elif Path(target).is_dir():
        raise CnnlabError(f"{target} is a folder but not a cnnlab run (no config.toml); give a run directory or a model name.")
    else:
        if data and input_shape:
            raise CnnlabError("give --data or --input, not both.")
        if data:
            from cnnlab.data import load_data

            dataset = load_data(data)
            shape, n_classes = dataset.input_shape, dataset.num_classes
        else:
            shape, n_classes = _shape(input_shape or "1x28x28"), classes
        model, name, source = build_model(target, shape, n_classes), target, "registry"
    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads or default_threads)
    try:
        result = run_bench(model, tuple(shape), n_classes, name=name, source=source, batch_size=batch_size,
                           steps=steps, channels_last=bool(channels_last), clock=clock)
    finally:  # `cnnlab bench` may run inside a longer Python process (tests, a notebook)
        torch.set_num_threads(default_threads)
    if as_json:
        _emit(result.to_dict())
        return
    r, p = result, result.peak
    layout = "channels_last" if r.channels_last else "contiguous (NCHW)"
    out.print(f"{r.model} on {'x'.join(map(str, r.input_shape))}, batch {r.batch_size}, {layout}, {r.threads} threads, "
              f"torch {r.torch} ({r.cpu_capability})"
              + (", times are process CPU seconds" if r.clock == "cpu" else ""))
    out.print(f"fp32 matmul peak [bold]{p.gflops:.1f}[/] GFLOP/s ({p.n}x{p.n}, best of 3)")
    out.print(f"training step: [bold]{r.images_per_s:,.0f}[/] images/s, {r.flops_per_step / 1e9:.3f} GFLOP per step "
              f"(forward + backward), [bold]{r.gflops:.1f}[/] GFLOP/s = [bold]{r.fraction_of_peak:.0%}[/] of peak "
              f"(best of {r.steps} steps: {r.step_seconds * 1e3:.1f} ms, median {r.step_seconds_median * 1e3:.1f} ms)")
    rows = [[k.kind, f"{k.ms:.1f}", f"{k.share:.0%}", f"{k.flops / 1e9:.3f}" if k.flops else "",
             f"{k.gflops:.1f}" if k.flops else "", f"{k.fraction_of_peak:.0%}" if k.flops else ""] for k in r.breakdown]
    out.print(_table(f"where the step's {r.step_seconds * 1e3:.1f} ms go (shares from torch.profiler over 3 more steps)",
                     ["kind", "ms", "share", "GFLOP", "GFLOP/s", "of peak"], rows))
    out.print(_table("layers as matrix products (forward; backward does two more of the same size)",
                     ["layer", "type", "M", "K", "N", "GFLOP"],
                     [[g.layer, g.type, f"{g.m:,}", g.k, g.n, f"{g.flops / 1e9:.3f}"] for g in r.gemms]))
