"""Why is LeNet-5 far below the CPU's peak and ResNet-20 not? A sweep of `cnnlab.bench.bench`.

Each argument is MODEL:CxHxW:BATCH:LAYOUT (LAYOUT: nchw or cl for channels_last); MODEL is a
registry name or `wideC1-C2`, LeNet-5 with C1 and C2 convolution channels instead of 6 and 16.
One peak is measured first and shared by every row. Prints one line per row: GFLOP/s, fraction
of peak, images/s, and the profiler's share of the step per kind of operator.

    python benchmarks/utilisation_sweep.py --threads 1 --clock cpu \\
        resnet20:3x32x32:256:nchw resnet20:3x32x32:256:cl lenet5:1x28x28:256:nchw wide32-64:1x28x28:256:nchw

Reached (2026-11-23, 2-core AMD EPYC, AVX2, torch 2.14.1, one thread, process CPU time, machine
shared): ResNet-20 60% of peak at batch 256 (73% channels_last), LeNet-5 15-21%, LeNet-5 with
32/64 channels 51%. Details: docs/benchmarks.md, "Hardware utilisation (#7)".
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from cnnlab.bench import bench, matmul_peak
from cnnlab.models import build_model


def wide_lenet(c1: int, c2: int, classes: int = 10) -> nn.Module:
    """LeNet-5's layout on 1x28x28 with c1 and c2 convolution channels (the paper's: 6 and 16)."""
    return nn.Sequential(
        nn.Conv2d(1, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (N, c1, 14, 14)
        nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2),  # (N, c2, 5, 5)
        nn.Flatten(), nn.Linear(c2 * 25, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, classes),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="+", help="MODEL:CxHxW:BATCH:nchw|cl")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--clock", default="wall", choices=["wall", "cpu"])
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    peak = matmul_peak(clock=args.clock)
    print(f"peak {peak.gflops:.1f} GFLOP/s ({peak.n}x{peak.n}, {peak.threads} threads, {args.clock} clock)", flush=True)
    for row in args.rows:
        name, shape_text, batch, layout = row.split(":")
        shape = tuple(int(v) for v in shape_text.split("x"))
        torch.manual_seed(0)
        if name.startswith("wide"):
            model = wide_lenet(*(int(v) for v in name[4:].split("-")))
        else:
            model = build_model(name, shape, 10)
        r = bench(model, shape, 10, name=name, batch_size=int(batch), steps=args.steps, warmup=1, profile_steps=1,
                  channels_last=layout == "cl", clock=args.clock, peak=peak)
        shares = ", ".join(f"{k.kind} {k.share:.0%}" for k in r.breakdown)
        print(f"{row}: {r.gflops:.1f} GFLOP/s = {r.fraction_of_peak:.0%} of peak, {r.images_per_s:,.0f} images/s; {shares}",
              flush=True)


if __name__ == "__main__":
    main()
