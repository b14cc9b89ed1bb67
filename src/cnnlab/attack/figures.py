"""The pictures of robustness: the lecture's "panda + noise = gibbon" rows, and accuracy vs eps.

Both take plain data and write one PNG through `cnnlab.report.figures` (matplotlib, Agg).
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from cnnlab.report.figures import pyplot, save_figure


def _show(ax, img: Tensor, cmap: str = "gray") -> None:  # noqa: ANN001 (a matplotlib Axes)
    img = img.detach().cpu().float()
    if img.shape[0] == 1:
        ax.imshow(img[0].numpy(), cmap=cmap, vmin=0, vmax=1)
    else:
        ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())
    ax.set_xticks([])
    ax.set_yticks([])


def adversarial_examples(
    x: Tensor, x_adv: Tensor, probs: Tensor, probs_adv: Tensor, y: Tensor, classes: list[str], eps: float,
    path: Path, attack: str = "attack",
) -> Path:
    """One row per image: original | perturbation, amplified | adversarial image.

    x, x_adv: (N, C, H, W) in [0, 1]; probs, probs_adv: (N, K) softmax of the model on each.
    The perturbation x_adv - x is tiny (at most eps per pixel): it is drawn amplified so that its
    largest change fills the colour scale (white = unchanged, red = brighter, blue = darker),
    or it would be invisible, which is the lecture's point.
    """
    plt = pyplot()
    n = len(x)
    fig, axes = plt.subplots(n, 3, figsize=(5.4, 2.1 * n + 0.4), squeeze=False, layout="constrained")
    scale = max(float((x_adv - x).abs().max()), 1e-12)  # the largest change actually made
    for i in range(n):
        p, pa = probs[i], probs_adv[i]
        c, ca = int(p.argmax()), int(pa.argmax())
        delta = (x_adv[i] - x[i]) / (2 * scale) + 0.5  # [-scale, scale] -> [0, 1]
        _show(axes[i, 0], x[i])
        _show(axes[i, 1], delta, cmap="seismic")
        _show(axes[i, 2], x_adv[i])
        truth = classes[int(y[i])]
        axes[i, 0].set_title(f"{classes[c]} {p[c]:.0%}\n(true: {truth})", fontsize=8,
                             color="black" if c == int(y[i]) else "red")
        axes[i, 1].set_title(f"+ perturbation\n(x{1 / (2 * scale):.0f}, |max| {scale:.3f})", fontsize=8)
        axes[i, 2].set_title(f"= {classes[ca]} {pa[ca]:.0%}", fontsize=8,
                             color="black" if ca == int(y[i]) else "red")
    fig.suptitle(f"{attack}, eps = {eps:g} (pixels in [0, 1])", fontsize=9)
    return save_figure(fig, path)


def accuracy_vs_eps(
    curves: dict[str, list[tuple[float, float]]], path: Path, title: str = "", norm: str = "linf",
    ylabel: str = "accuracy under attack",
) -> Path:
    """Accuracy (or another score in [0, 1], named by `ylabel`: a detector's mAP, a segmenter's
    mIoU) (y) against eps (x), one line per label: {"pgd-20": [(0, .90), (0.1, .02)], ...}."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    for label, points in curves.items():
        ax.plot([e for e, _ in points], [a for _, a in points], "o-", label=label)
    ax.set_xlabel(f"eps ({'L-inf' if norm == 'linf' else 'L2'} radius, pixels in [0, 1])")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path)
