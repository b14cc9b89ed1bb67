"""Segmentation (scene labelling): a class per pixel, learned by per-pixel cross-entropy, scored
by mean IoU, global pixel accuracy and class-average accuracy.

Works on any `nn.Module` that maps pixels (N, C, H, W) in [0, 1] to logits (N, K, H, W).
Targets are a `Targets` whose `mask` field (N, H, W) int64 holds each pixel's class, IGNORE
where none is known (pixels a crop brought in from the padding); those pixels count nowhere.

The numbers are those of the scene-labelling literature (Long et al. 2015, section 5; the three
that Shuai et al. 2016 report), all from one confusion matrix C over the labelled pixels
(row = true class, column = predicted):

    IoU_k       = C[k, k] / (row_k + column_k - C[k, k])   mean over classes: mIoU
    pixel_acc   = sum_k C[k, k] / sum C                    (Shuai et al.'s "global accuracy")
    class_acc   = mean_k C[k, k] / row_k                   (their "class-average accuracy")

A class that is neither true nor predicted anywhere has no IoU (NaN) and is left out of the mean.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from cnnlab.data.targets import IGNORE, Targets
from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write_text, json_text
from cnnlab.tasks.base import Task, register_task
from cnnlab.tasks.classify import confusion_matrix

if TYPE_CHECKING:
    from cnnlab.data import Dataset, Split

PICTURED = 12  # test images shown beside their true and predicted masks
# Distinct colours of the classes after the background (Trubetskoy's list of 20), in order.
COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
           "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000"]


def pixel_confusion(logits: Tensor, mask: Tensor) -> Tensor:
    """(K, K) counts of labelled pixels, row = true class, column = predicted (argmax).
    logits: (N, K, H, W); mask: (N, H, W) int64, IGNORE pixels left out."""
    labelled = mask != IGNORE
    return confusion_matrix(mask[labelled], logits.argmax(1)[labelled], logits.shape[1])


def scores(confusion: Tensor) -> dict[str, float | list[float]]:
    """mIoU, pixel_acc, class_acc and each class's IoU (NaN where undefined) from a (K, K) confusion."""
    c = confusion.double()
    tp, true, predicted = c.diag(), c.sum(1), c.sum(0)
    union = true + predicted - tp
    iou = torch.where(union > 0, tp / union.clamp_min(1), math.nan)
    recall = torch.where(true > 0, tp / true.clamp_min(1), math.nan)
    return {
        "miou": iou.nanmean().item(),
        "pixel_acc": (tp.sum() / c.sum().clamp_min(1)).item(),
        "class_acc": recall.nanmean().item(),
        "iou": iou.tolist(),
    }


@register_task
class Segment(Task):
    name = "segment"
    target = "a class per pixel"
    score = "miou"
    train_metrics = ("pixel_acc",)
    train_sum_count = 2  # correct pixels and labelled pixels: their ratio is the pixel accuracy

    def loss(self, outputs: Tensor, y: Targets) -> Tensor:
        return F.cross_entropy(outputs, y.get("mask"), ignore_index=IGNORE)

    def per_example_loss(self, outputs: Tensor, y: Targets) -> Tensor:
        """(N,) mean cross-entropy over each image's labelled pixels."""
        mask = y.get("mask")
        per_pixel = F.cross_entropy(outputs, mask, ignore_index=IGNORE, reduction="none")  # 0 where ignored
        return per_pixel.sum((1, 2)) / (mask != IGNORE).sum((1, 2)).clamp_min(1)

    def train_sums(self, outputs: Tensor, y: Targets) -> Tensor:
        """Correct labelled pixels and labelled pixels: their ratio is the epoch's pixel accuracy."""
        mask = y.get("mask")
        labelled = mask != IGNORE
        correct = ((outputs.argmax(1) == mask) & labelled).sum()
        return torch.stack([correct, labelled.sum()]).to(torch.float64)

    def train_summary(self, sums: list[float], seen: int) -> dict[str, float]:
        correct, labelled = sums
        return {"pixel_acc": correct / max(labelled, 1)}

    def unflip(self, outputs: Tensor) -> Tensor:
        return outputs.flip(-1)  # the scores of the mirror's pixel (i, W-1-j) belong to pixel (i, j)

    def metrics(self, outputs: Tensor, y: Targets) -> dict[str, float]:
        """loss, miou, pixel_acc, class_acc, and per_class: {class: IoU}."""
        got = scores(pixel_confusion(outputs, y.get("mask")))
        per_class = dict(zip(self.classes, got.pop("iou"), strict=True))
        return {"loss": self.loss(outputs, y).item(), **got, "per_class": per_class}

    def decode(self, outputs: Tensor) -> Tensor:
        """(N, K, H, W) logits -> (N, H, W) int64 class map."""
        return outputs.argmax(1)

    def check_outputs(self, outputs: Tensor, data: Dataset) -> None:
        _, h, w = data.input_shape
        if outputs.ndim != 4 or tuple(outputs.shape[1:]) != (data.num_classes, h, w):
            raise CnnlabError(
                f"your model outputs shape {tuple(outputs.shape)} but {data.name} needs (N, {data.num_classes}, {h}, {w}) "
                "logits: a score for each class at each pixel."
            )

    def pictures(self, outputs: Tensor, split: Split, out: Path) -> dict[str, Path]:
        """evaluation.json (the metrics), the pixel confusion matrix, and the first test images
        beside their true and predicted masks."""
        from cnnlab.report import confusion_matrix as draw_confusion

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        mask = split.y.get("mask")
        confusion = pixel_confusion(outputs, mask)
        results = {**self.metrics(outputs, split.y), "classes": self.classes, "confusion": confusion.tolist()}
        atomic_write_text(out / "evaluation.json", json_text(results))
        shown = slice(0, PICTURED)
        return {
            "evaluation": out / "evaluation.json",
            "confusion": draw_confusion(confusion, self.classes, out / "confusion.png"),
            "masks": mask_grid(split.x[shown], mask[shown], self.decode(outputs[shown]), self.classes, out / "masks.png"),
        }

    def predictions(self, outputs: Tensor, size: tuple[int, int], images: list[Tensor], names: list[str],
                    out: Path) -> list[dict[str, Any]]:
        """Each image's class map at the image's own size (nearest neighbour: every pixel keeps
        a class the model gave), as a PNG of class indices, 0 the background (NAME-mask.png),
        and drawn over the image (NAME-overlay.png); and the share of its pixels each class takes."""
        from cnnlab.report import save_png

        if len(self.classes) > 256:
            raise CnnlabError(f"a mask PNG holds 256 class indices at most; this run has {len(self.classes)} classes.")
        found = []
        for cmap, image, name in zip(self.decode(outputs), images, names, strict=True):
            cmap = F.interpolate(cmap[None, None].float(), size=tuple(image.shape[1:]), mode="nearest")[0, 0].long()
            share = torch.bincount(cmap.flatten(), minlength=len(self.classes)) / cmap.numel()
            found.append({
                "mask": str(save_png(cmap[None], Path(out) / f"{name}-mask.png")),
                "picture": str(save_png(overlay(image, cmap, len(self.classes)), Path(out) / f"{name}-overlay.png")),
                "pixels": {c: v for c, v in zip(self.classes, share.tolist(), strict=True) if v > 0},
            })
        return found


def overlay(image: Tensor, mask: Tensor, num_classes: int, alpha: float = 0.7) -> Tensor:
    """image (C, H, W) in [0, 1], in grey, with each non-background class of mask (H, W)
    painted over it in its colour (class 0 and IGNORE pixels left grey) -> (3, H, W) in [0, 1].
    Grey, so that an object's own colour is never mistaken for a class's."""
    from torchvision.utils import draw_segmentation_masks

    grey = image.mean(0, keepdim=True).expand(3, -1, -1)
    rgb = (grey * 255).round().to(torch.uint8)
    classes = range(1, num_classes)
    masks = torch.stack([mask == k for k in classes])
    return draw_segmentation_masks(rgb, masks, alpha=alpha, colors=[class_colour(k) for k in classes]).float() / 255


def mask_grid(images: Tensor, true: Tensor, predicted: Tensor, classes: list[str], path: Path, pairs: int = 2) -> Path:
    """Each image (N, C, H, W) beside its true and predicted masks (N, H, W), `pairs` images a
    row, with a key of the class colours."""
    from matplotlib.patches import Patch

    from cnnlab.report import pyplot, save_figure

    plt = pyplot()
    rows = max(1, -(-len(images) // pairs))
    fig, axes = plt.subplots(rows, 3 * pairs, figsize=(1.7 * 3 * pairs, 1.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (x, t, p) in enumerate(zip(images, true, predicted, strict=True)):
        panels = (x.expand(3, -1, -1), overlay(x, t, len(classes)), overlay(x, p, len(classes)))
        for j, (panel, title) in enumerate(zip(panels, ("image", "true", "predicted"), strict=True)):
            ax = axes[i // pairs, 3 * (i % pairs) + j]
            ax.imshow(panel.permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_title(title, fontsize=8)
    fig.tight_layout()
    key = [Patch(color=class_colour(k), label=name) for k, name in enumerate(classes) if k > 0]
    fig.legend(handles=key, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(key), fontsize=8, frameon=False)
    return save_figure(fig, path)


def class_colour(k: int) -> str:
    """The colour of class k >= 1 in every picture (and on the lab page); class 0, the background, has none."""
    return COLOURS[(k - 1) % len(COLOURS)]
