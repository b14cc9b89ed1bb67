"""The pictures of "inside the CNN": permuted images, accuracies, filters, feature maps.

Each function takes plain tensors, draws with matplotlib's Agg backend and writes one PNG
atomically (through `cnnlab.report.figures`).
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from cnnlab.report.figures import pyplot, save_figure


def _show(ax, img: Tensor, cmap: str = "gray", symmetric: bool = False) -> None:
    """One (C, H, W) image on `ax`: gray for 1 channel, RGB for 3; no ticks."""
    img = img.detach().float().cpu()
    ax.set_xticks([])
    ax.set_yticks([])
    if img.shape[0] == 3:
        ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())
        return
    a = img[0]
    if symmetric:  # weights: 0 is white-grey in the middle, sign is colour
        m = float(a.abs().max()) or 1.0
        ax.imshow(a.numpy(), cmap="RdBu_r", vmin=-m, vmax=m)
    else:
        ax.imshow(a.numpy(), cmap=cmap)


def permutation_figure(original: Tensor, permuted: Tensor, path: Path) -> Path:
    """Top row the original images, bottom row the same images after the fixed permutation."""
    plt = pyplot()
    n = len(original)
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n, 3.0), squeeze=False)
    for j in range(n):
        _show(axes[0, j], original[j])
        _show(axes[1, j], permuted[j])
    axes[0, 0].set_ylabel("original", fontsize=9)
    axes[1, 0].set_ylabel("permuted", fontsize=9)
    fig.suptitle("one fixed pixel permutation, the same for every image", fontsize=10)
    return save_figure(fig, path)


def accuracy_figure(accuracy: dict[str, dict[str, float]], path: Path) -> Path:
    """Test accuracy of each model on original and on permuted pixels, as grouped bars."""
    plt = pyplot()
    models = list(accuracy)
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    for k, (pixels, colour) in enumerate((("original", "#4477aa"), ("permuted", "#ee6677"))):
        values = [accuracy[m][pixels] for m in models]
        bars = ax.bar([i + 0.38 * k for i in range(len(models))], values, width=0.36, label=pixels, color=colour)
        ax.bar_label(bars, [f"{v:.3f}" for v in values], fontsize=8)
    ax.set_xticks([i + 0.19 for i in range(len(models))], models)
    low = min(min(v["original"], v["permuted"]) for v in accuracy.values())
    ax.set_ylim(max(0.0, low - 0.1), 1.0)
    ax.set_ylabel("test accuracy")
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path)


def filters_figure(weight: Tensor, title: str, path: Path, max_filters: int = 64) -> Path:
    """First-layer kernels (C_out, C_in, k, k) in a grid.

    RGB kernels are shown as colour images (each scaled to [0, 1] on its own), one-channel
    kernels in a red-blue map centred on 0 (red positive, blue negative); for other channel
    counts each kernel shows its mean over the input channels.
    """
    plt = pyplot()
    w = weight.detach().float().cpu()[:max_filters]
    if w.shape[1] == 3:
        lo = w.amin(dim=(1, 2, 3), keepdim=True)
        hi = w.amax(dim=(1, 2, 3), keepdim=True)
        w = (w - lo) / (hi - lo).clamp_min(1e-12)
    elif w.shape[1] != 1:
        w = w.mean(1, keepdim=True)
    n = len(w)
    cols = min(n, 8)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols, 1.2 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, kernel) in enumerate(zip(axes.flat, w)):
        ax.axis("on")
        _show(ax, kernel, symmetric=kernel.shape[0] == 1)
        ax.set_title(str(i), fontsize=7)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def feature_maps_figure(image: Tensor, maps: Tensor, title: str, path: Path, max_maps: int = 32) -> Path:
    """The input image, then the layer's activations (C, H, W), one small map per channel."""
    plt = pyplot()
    maps = maps.detach().float().cpu()[:max_maps]
    n = len(maps) + 1
    cols = min(n, 9)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.3 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    _show(axes.flat[0], image)
    axes.flat[0].axis("on")
    axes.flat[0].set_title("input", fontsize=7)
    for i, (ax, m) in enumerate(zip(list(axes.flat)[1:], maps)):
        ax.axis("on")
        _show(ax, m.unsqueeze(0), cmap="viridis")
        ax.set_title(str(i), fontsize=7)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def convolved_figure(image: Tensor, result: Tensor, kernel: Tensor, path: Path) -> Path:
    """Input, kernel and output side by side (the picture `cnnlab conv --image` shows)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2), gridspec_kw={"width_ratios": [4, 1.5, 4]})
    _show(axes[0], image)
    axes[0].set_title("input", fontsize=9)
    _show(axes[1], kernel.unsqueeze(0), symmetric=True)
    axes[1].set_title("kernel", fontsize=9)
    for (i, j), v in _cells(kernel):
        axes[1].text(j, i, f"{v:g}", ha="center", va="center", fontsize=7)
    _show(axes[2], result)
    axes[2].set_title("output", fontsize=9)
    return save_figure(fig, path)


def _cells(kernel: Tensor):
    k1, k2 = kernel.shape
    if k1 * k2 > 49:  # too many numbers to read; the colours say enough
        return []
    return [((i, j), float(kernel[i, j])) for i in range(k1) for j in range(k2)]
