"""Attribution pictures: each image beside its heatmaps, laid over it.

A heatmap shows the magnitude of the attribution summed over colour channels, scaled per
map to its 99th percentile: the colour says "more or less important here than elsewhere in
this image", not an absolute quantity comparable across methods.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from cnnlab.report.figures import pyplot, save_figure, show_pixels


def heat(attribution: Tensor) -> Tensor:
    """(C, H, W) attribution -> (H, W) in [0, 1]: |a| summed over channels, / 99th percentile."""
    m = attribution.abs().sum(0)
    top = torch.quantile(m.flatten(), 0.99).clamp_min(1e-12)
    return (m / top).clamp(0, 1)


def _show_image(ax, x: Tensor) -> None:  # noqa: ANN001 - a matplotlib Axes
    show_pixels(ax, x)
    ax.set_xticks([])
    ax.set_yticks([])


def attribution_grid(
    images: Tensor, maps: dict[str, Tensor], titles: list[str], path: Path, names: list[str] | None = None
) -> Path:
    """One row per image: the image (titled, e.g. 'ankle boot 0.97'), then each method's
    heatmap over a faded copy of it. images: (N, C, H, W) in [0, 1]; maps: method -> (N, C, H, W)."""
    plt = pyplot()
    n, cols = len(images), 1 + len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(1.9 * cols, 2.0 * n + 0.3), squeeze=False)
    for i in range(n):
        _show_image(axes[i, 0], images[i])
        axes[i, 0].set_title(titles[i], fontsize=8)
        if names:
            axes[i, 0].set_ylabel(names[i], fontsize=7)
        for j, (method, a) in enumerate(maps.items(), start=1):
            ax = axes[i, j]
            _show_image(ax, images[i] * 0.6)  # faded, so the heat stays readable on white pixels
            ax.imshow(heat(a[i]).numpy(), cmap="inferno", alpha=0.65, vmin=0, vmax=1)
            if i == 0:
                ax.set_title(method, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def influence_grid(
    test_image: Tensor, title: str, rows: dict[str, tuple[Tensor, list[str]]], path: Path
) -> Path:
    """The explained image, then one row per group ('proponents', 'opponents') of training
    images with their label and influence score."""
    plt = pyplot()
    k = max(len(imgs) for imgs, _ in rows.values())
    fig, axes = plt.subplots(1 + len(rows), max(k, 1), figsize=(1.5 * max(k, 1), 1.75 * (1 + len(rows))), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    _show_image(axes[0, 0], test_image)
    axes[0, 0].axis("on")
    axes[0, 0].set_title(title, fontsize=8)
    for r, (group, (imgs, labels)) in enumerate(rows.items(), start=1):
        for j, (img, label) in enumerate(zip(imgs, labels)):
            _show_image(axes[r, j], img)
            axes[r, j].axis("on")
            axes[r, j].set_title(label, fontsize=7)
        axes[r, 0].set_ylabel(group, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def deletion_curves(curves: dict[str, Tensor], path: Path) -> Path:
    """Probability of the predicted class (mean over images) vs share of pixels deleted."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    for method, curve in curves.items():
        frac = torch.linspace(0, 1, len(curve))
        ax.plot(frac.numpy(), curve.numpy(), "--" if method == "random" else "-", label=method)
    ax.set_xlabel("share of pixels set to 0 (most important first)")
    ax.set_ylabel("probability of the predicted class")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def image_row(images: Tensor, labels: list[str], path: Path, per_row: int = 8) -> Path:
    """Images (N, C, H, W) in rows of `per_row`, each titled with its label."""
    plt = pyplot()
    n = len(images)
    rows = max(1, -(-n // per_row))
    fig, axes = plt.subplots(rows, per_row, figsize=(1.5 * per_row, 1.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, label in zip(axes.flat, images, labels):
        _show_image(ax, img)
        ax.axis("on")
        ax.set_title(label, fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)
