"""Is a compressed run faster than its parent? Forward latency at batch 1 and 256, runs side by side.

Each run is opened as cnnlab opens it (`Run.load`: a pruned, int8 or tree run rebuilt from its
provenance.json). The runs take turns in one process (one thread unless --threads): blocks of single forward
passes of random pixels, run A's block, then B's, ..., repeated, so a burst of load from other
processes falls on all of them alike; each pass is timed alone and the median of each run's
passes is printed, with the ratio to the first run (< 1: faster than it).

Measured on the idle 2-core machine of docs/results.md ("Smaller and hierarchical models"),
torch 2.14.1, 1 thread: LeNet-5 int8 0.80x at batch 1 and 0.44x at 256, channel-pruned 0.93x and
0.62x; FastNet int8 0.48x and 0.17x.

    python benchmarks/compress_latency.py runs/lenet runs/lenet-int8 runs/lenet-channels
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from cnnlab.run import Run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories; the first is the reference")
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--passes", type=int, default=500, help="single passes per block at batch 1 (batch 256: 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (cnnlab compare measures with all cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = {path: Run.load(path).model for path in args.runs}
    shape = Run.load(args.runs[0]).input_shape
    times: dict[str, dict[int, list[float]]] = {path: {1: [], 256: []} for path in models}
    with torch.inference_mode():
        for batch, passes in ((1, args.passes), (256, 3)):
            x = torch.rand(batch, *shape)
            for _ in range(args.blocks):
                for path, model in models.items():
                    for _ in range(passes):
                        start = time.perf_counter()
                        model(x)
                        times[path][batch].append(1000 * (time.perf_counter() - start))
    first = args.runs[0]
    for path in models:
        one, many = (statistics.median(times[path][b]) for b in (1, 256))
        ratio_one, ratio_many = one / statistics.median(times[first][1]), many / statistics.median(times[first][256])
        print(f"{path}: batch 1 {one:.3f} ms ({ratio_one:.2f}x), batch 256 {many:.1f} ms ({ratio_many:.2f}x)")


if __name__ == "__main__":
    main()
