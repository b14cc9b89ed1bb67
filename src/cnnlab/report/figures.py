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

import torch
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


def save_png(pixels: Tensor, path: Path) -> Path:
    """Write pixels (C, H, W), C 1 or 3, uint8 as they are or float in [0, 1], to `path` as a
    PNG of exactly those pixels (atomically, making its folder): a picture, or a mask whose
    values are class indices."""
    from PIL import Image

    if pixels.is_floating_point():
        pixels = (pixels.clamp(0, 1) * 255).round()
    array = pixels.to(torch.uint8).cpu().permute(1, 2, 0).numpy()
    image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: image.save(tmp, format="png"))
    return path


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the Agg backend, imported only when a figure is drawn: it costs ~0.5 s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(metrics: list[dict[str, Any]], path: Path, scores: dict[str, str] | None = None,
                    loss: str = "cross-entropy loss") -> Path:
    """Loss and scores per epoch, train and validation where recorded, from metrics.jsonl
    records. scores: {key: name} of the numbers on the right (default accuracy, `acc`); `loss`
    names the loss."""
    plt = pyplot()
    scores = scores or {"acc": "accuracy"}
    epochs = [m for m in metrics if m.get("event") == "epoch"]
    x = [m["epoch"] for m in epochs]
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, keys, ylabel in ((ax_loss, {"loss": loss}, loss), (ax_score, scores, ", ".join(scores.values()))):
        for key, name in keys.items():
            for stage, stage_name in (("train", "train"), ("val", "validation")):
                if epochs and f"{stage}_{key}" in epochs[0]:
                    ax.plot(x, [m[f"{stage}_{key}"] for m in epochs], "o-",
                            label=stage_name if len(keys) == 1 else f"{stage_name} {name}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
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


def show_pixels(ax: Any, pixels: Tensor) -> None:
    """Draw (C, H, W) pixels in [0, 1] on a matplotlib Axes: gray on a fixed 0-1 scale for one
    channel (imshow would stretch each image's own range), RGB for three."""
    pixels = pixels.detach().cpu().clamp(0, 1)
    if pixels.shape[0] == 1:
        ax.imshow(pixels[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(pixels.permute(1, 2, 0).numpy())


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
        show_pixels(ax, img)
        ax.set_title(title, fontsize=7)
    return save_figure(fig, path)
