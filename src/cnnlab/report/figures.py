"""Figures from plain data: training curves, a confusion matrix, a grid of images.

Each function takes plain data, draws with matplotlib's Agg backend (no screen needed) and
writes one PNG atomically with `save_figure`. Analyses draw their own pictures the same way:

    plt = pyplot()
    fig, ax = plt.subplots()
    ...
    return save_figure(fig, path)
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from torch import Tensor

from cnnlab.files import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def save_figure(fig: Figure, path: Path) -> Path:
    """Write `fig` to `path` as a PNG (atomically, making its folder) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the Agg backend, imported only when a figure is drawn: it costs ~0.5 s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(metrics: list[dict[str, Any]], path: Path) -> Path:
    """Loss and accuracy per epoch, train and validation, from metrics.jsonl records."""
    plt = pyplot()
    epochs = [m for m in metrics if m.get("event") == "epoch"]
    x = [m["epoch"] for m in epochs]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, key in ((ax_loss, "loss"), (ax_acc, "acc")):
        ax.plot(x, [m[f"train_{key}"] for m in epochs], "o-", label="train")
        if epochs and f"val_{key}" in epochs[0]:
            ax.plot(x, [m[f"val_{key}"] for m in epochs], "o-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy" if key == "acc" else "cross-entropy loss")
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(fig, path)


def confusion_matrix(confusion: Tensor, classes: list[str], path: Path) -> Path:
    """Rows = true class, columns = predicted; colour = share of the row, text = count."""
    plt = pyplot()
    k = len(classes)
    share = confusion.double() / confusion.sum(1, keepdim=True).clamp_min(1)
    size = max(4.0, 0.45 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(share.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                n = int(confusion[i, j])
                if n:
                    ax.text(j, i, str(n), ha="center", va="center", fontsize=8,
                            color="white" if share[i, j] > 0.5 else "black")
    return save_figure(fig, path)


def image_grid(
    images: Tensor, titles: list[str], path: Path, columns: int = 8
) -> Path:
    """Images (N, C, H, W) in [0, 1] in a grid, each with its title."""
    plt = pyplot()
    n = max(len(images), 1)
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, images, titles, strict=False):  # the grid's last row may have empty cells
        img = img.detach().cpu().clamp(0, 1)
        if img.shape[0] == 1:
            ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(img.permute(1, 2, 0).numpy())
        ax.set_title(title, fontsize=7)
    return save_figure(fig, path)
