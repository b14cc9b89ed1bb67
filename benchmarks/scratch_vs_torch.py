"""How fast is the NumPy CNN? Forward + backward of cnnlab.scratch layers against torch, on the CPU.

Each row runs the same layer (same weights, same float32 batch) forward and backward, in
NumPy (`cnnlab.scratch`, im2col convolution; the loop convolution too, for the lesson) and in
torch (`torch.nn.functional`, autograd), back to back in one process, `--repeats` times.
Both use one thread (OpenBLAS through threadpoolctl, torch through set_num_threads): at these
sizes extra threads mostly add contention on a shared machine.

Printed: the best milliseconds per forward+backward of each, and the median over the repeats
of the ratio NumPy / torch timed back to back (how many times slower the readable NumPy layer
is). Results: docs/benchmarks.md.

    python benchmarks/scratch_vs_torch.py [--batch 64] [--repeats 5]

Evidence: LeNet-5 forward + backward at batch 64, NumPy / torch = 2.3x (median of 15), the
im2col convolutions 1.5x and 3.3x, the loop convolution up to 6.9x; 2 shared CPU cores (load
average ~13, so noisy), torch 2.14.1, numpy 2.4.6, 2026-11-23.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits

from cnnlab.scratch import Conv2d, Linear, MaxPool2d, lenet5, softmax_cross_entropy


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return 1000 * (time.perf_counter() - start)


def compare(ours: Callable[[], object], theirs: Callable[[], object], repeats: int) -> tuple[float, float, float]:
    """Best ms of each, and the median of the per-repeat ratios ours / theirs.

    The two are timed back to back in every repeat, so a burst of load from another process
    hits both sides of a ratio; the median then ignores the repeats a burst split.
    """
    ours(), theirs()  # warm-up: allocations, torch's kernel selection
    pairs = [(timed(ours), timed(theirs)) for _ in range(repeats)]
    ratios = sorted(a / b for a, b in pairs)
    return min(a for a, _ in pairs), min(b for _, b in pairs), ratios[len(ratios) // 2]


def numpy_step(layer, x: np.ndarray) -> Callable[[], object]:
    def run() -> object:
        out = layer.forward(x)
        return layer.backward(np.ones_like(out))
    return run


def torch_step(forward: Callable[[torch.Tensor], torch.Tensor], x: np.ndarray) -> Callable[[], object]:
    xt = torch.from_numpy(x).requires_grad_(True)

    def run() -> object:
        xt.grad = None
        out = forward(xt)
        out.backward(torch.ones_like(out))
        return xt.grad
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n = args.batch

    rows: list[tuple[str, Callable[[], object], Callable[[], object]]] = []
    for name, (c, f, side, pad) in {"conv1 1->6 5x5 pad 2, 28x28": (1, 6, 28, 2),
                                    "conv2 6->16 5x5, 14x14": (6, 16, 14, 0)}.items():
        x = rng.standard_normal((n, c, side, side)).astype(np.float32)
        layer = Conv2d(c, f, 5, padding=pad, rng=rng)
        loop = Conv2d(c, f, 5, padding=pad, impl="loop", rng=rng)
        w = torch.from_numpy(layer.params["weight"]).requires_grad_(True)
        b = torch.from_numpy(layer.params["bias"]).requires_grad_(True)
        rows.append((f"{name} (im2col)", numpy_step(layer, x), torch_step(lambda t, w=w, b=b, p=pad: F.conv2d(t, w, b, padding=p), x)))
        rows.append((f"{name} (loop)", numpy_step(loop, x), torch_step(lambda t, w=w, b=b, p=pad: F.conv2d(t, w, b, padding=p), x)))
    x = rng.standard_normal((n, 6, 28, 28)).astype(np.float32)
    rows.append(("maxpool 2x2, 6x28x28", numpy_step(MaxPool2d(2), x), torch_step(lambda t: F.max_pool2d(t, 2), x)))
    x = rng.standard_normal((n, 400)).astype(np.float32)
    fc = Linear(400, 120, rng=rng)
    w, b = (torch.from_numpy(fc.params[k]).requires_grad_(True) for k in ("weight", "bias"))
    rows.append(("linear 400->120", numpy_step(fc, x), torch_step(lambda t: F.linear(t, w, b), x)))

    # the whole LeNet-5 with its loss, as one training step computes it (without the update)
    from cnnlab.models import build_model

    net = lenet5(seed=0)
    model = build_model("lenet5", (1, 28, 28), 10)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, p, _ in net.parameters():
            layer, kind = name.split(".")
            params[f"net.{'features' if layer.startswith('conv') else 'classifier'}.{layer}.{kind}"].copy_(torch.from_numpy(p))
    x = rng.random((n, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, n)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def numpy_net() -> object:
        _, dlogits = softmax_cross_entropy(net.forward(x), y)
        return net.backward(dlogits)

    def torch_net() -> object:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(xt), yt).backward()

    rows.append(("LeNet-5 + cross-entropy", numpy_net, torch_net))

    print(f"batch {n}, float32, 1 thread, {args.repeats} repeats; torch {torch.__version__}, numpy {np.__version__}")
    print(f"{'layer (forward + backward)':<40} {'numpy ms':>10} {'torch ms':>10} {'numpy/torch (median)':>21}")
    with threadpool_limits(limits=1, user_api="blas"):
        for name, ours, theirs in rows:
            ours_ms, torch_ms, ratio = compare(ours, theirs, args.repeats)
            print(f"{name:<40} {ours_ms:>10.2f} {torch_ms:>10.2f} {ratio:>20.1f}x")


if __name__ == "__main__":
    main()
