"""One LeNet-5 epoch on Fashion-MNIST in plain PyTorch: what `cnnlab train` replaces.

    cnnlab train --model lenet5 --data fashion-mnist --epochs 1

does the same work as this script: read the four gzipped IDX files, hold out 10% of the
training images for validation, train LeNet-5 (inputs standardised by the training mean and
std) for one epoch with SGD + Nesterov and a one-cycle schedule, batch 128, then score the
validation and test images. `benchmarks/startup.py` times both as whole processes; diff the two
to see what the toolkit adds (run directory, provenance, checkpoints, energy record).

    python benchmarks/plain_fmnist.py [--data-dir /usr/share/datasets/fashion-mnist]
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def read_idx(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(folder: Path, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")
    return torch.from_numpy(images.copy()).unsqueeze(1).float().div_(255), torch.from_numpy(labels.copy()).long()


def lenet5(mean: float, std: float) -> nn.Module:
    class Standardise(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x - mean) / std

    return nn.Sequential(
        Standardise(),
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    logits = torch.cat([model(x[i : i + 512]) for i in range(0, len(x), 512)])
    return (logits.argmax(1) == y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()

    torch.manual_seed(0)
    x, y = load(args.data_dir, "train")
    x_test, y_test = load(args.data_dir, "t10k")
    order = torch.randperm(len(y))
    val, train = order[: len(y) // 10], order[len(y) // 10 :]
    x_val, y_val, x, y = x[val], y[val], x[train], y[train]

    model = lenet5(x.mean().item(), x.std().item())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = args.epochs * -(-len(y) // 128)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.05, total_steps=steps, pct_start=0.25, cycle_momentum=False)
    for epoch in range(args.epochs):
        model.train()
        shuffled = torch.randperm(len(y))
        for i in range(0, len(y), 128):
            idx = shuffled[i : i + 128]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        print(f"epoch {epoch + 1}: val accuracy {accuracy(model, x_val, y_val):.4f}")
    print(f"test accuracy {accuracy(model, x_test, y_test):.4f}")


if __name__ == "__main__":
    main()
