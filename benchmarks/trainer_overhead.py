"""What does `cnnlab train` cost over a plain PyTorch loop? LeNet-5 on Fashion-MNIST.

Both train the same network (cnnlab's `lenet5`, same initial weights) on the same in-memory
tensors with the same batch size, optimizer and one-cycle schedule. The plain loop is the
shortest correct loop a PyTorch user writes; cnnlab's adds validation, metrics.jsonl,
checkpoints and safetensors weights at every epoch end. They run interleaved in one process,
`--repeats` times, and the best time of each is compared.

Printed: training images/s of each (steps only) and of the whole epoch (with cnnlab's
validation and files), and the ratios cnnlab / plain. Results: docs/benchmarks.md.

    python benchmarks/trainer_overhead.py [--data fashion-mnist] [--epochs 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import cnnlab
from cnnlab.data import load_data
from cnnlab.models import build_model
from cnnlab.training import TrainConfig
from cnnlab.training.optim import make_optimizer, make_schedule


def plain_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig) -> float:
    """The reference: shuffle, slice, forward, loss, backward, step. Returns seconds."""
    steps = cfg.epochs * (len(y) // cfg.batch_size + (len(y) % cfg.batch_size > 0))
    optimizer = make_optimizer(model, cfg)
    schedule = make_schedule(optimizer, cfg, steps)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    model.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(len(y))
        for i in range(0, len(y), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.set_num_threads(torch.get_num_threads())
    data = load_data(args.data)
    cfg = TrainConfig(model="lenet5", data=args.data, epochs=args.epochs, batch_size=args.batch_size).resolved()
    n = len(data.train) * args.epochs
    plain, ours_steps, ours_total = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            torch.manual_seed(0)
            model = build_model("lenet5", data.input_shape, data.num_classes, *data.stats())
            plain.append(plain_loop(model, data.train.x, data.train.y, cfg))

            start = time.perf_counter()
            run = cnnlab.train(cfg, data=data, out=Path(tmp) / f"run{r}", quiet=True)
            ours_total.append(time.perf_counter() - start)
            epochs = [m for m in run.metrics() if m["event"] == "epoch"]
            ours_steps.append(sum(len(data.train) / m["images_per_s"] for m in epochs))
            print(f"repeat {r + 1}: plain {plain[-1]:.2f} s, cnnlab steps {ours_steps[-1]:.2f} s, "
                  f"cnnlab whole train() {ours_total[-1]:.2f} s", flush=True)

    result = {
        "data": args.data, "train_images": len(data.train), "epochs": args.epochs, "batch_size": args.batch_size,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "plain_images_per_s": n / min(plain),
        "cnnlab_images_per_s": n / min(ours_steps),
        "cnnlab_whole_run_images_per_s": n / min(ours_total),
    }
    result["ratio_steps"] = result["cnnlab_images_per_s"] / result["plain_images_per_s"]
    result["ratio_whole_run"] = result["cnnlab_whole_run_images_per_s"] / result["plain_images_per_s"]
    print(json.dumps(result, indent=2))
    print(f"cnnlab / plain images per second: {result['ratio_steps']:.3f} (training steps), "
          f"{result['ratio_whole_run']:.3f} (whole train(), with validation, test and files)")


if __name__ == "__main__":
    main()
