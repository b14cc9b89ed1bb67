"""YOLO: one pass of a CNN predicts every box on an S x S grid (Redmon, Divvala, Girshick &
Farhadi 2016, "You Only Look Once: Unified, Real-Time Object Detection", CVPR).

The image is cut into an S x S grid, and the cell that holds an object's centre is responsible
for it (section 2). Each cell predicts B boxes, each as (x, y, sqrt w, sqrt h, confidence):
x, y the centre's place inside the cell, w, h the box's share of the image; and one set of
class probabilities Pr(class | object). The confidence learns Pr(object) * IoU(predicted, true),
so a box's score for a class is confidence * Pr(class | object) (eq. 1). The loss (eq. 3) is
one sum of squares:

      λ_coord Σ_ij 1obj_ij [(x - x̂)² + (y - ŷ)² + (√w - √ŵ)² + (√h - √ĥ)²]
    + Σ_ij 1obj_ij (C - Ĉ)²            Ĉ: the IoU of the predicted box with the true one
    + λ_noobj Σ_ij 1noobj_ij C²
    + Σ_i 1obj_i Σ_c (p(c) - p̂(c))²

1obj_ij picks, in a cell that holds an object, the one of its B predictors whose box overlaps
the true box most (the "responsible" one); 1noobj_ij is every other predictor. λ_coord = 5 and
λ_noobj = 0.5, the paper's, keep the many empty cells from drowning the few that hold objects;
the square roots make a few pixels of error cost more on a small box than on a large one.

What differs from the paper, for 96x96 images and 2 CPU cores: a small backbone of nine 3x3
convolutions with BatchNorm (the paper: 24 convolutions pre-trained on ImageNet; BatchNorm
came with YOLOv2, Redmon & Farhadi 2017) and ReLU where the paper has leaky ReLU; the grid is
read by a 1x1 convolution, so every cell is scored by the same weights (the paper's two fully
connected layers see the whole image but must learn each cell apart, from 2,000 images
here); x, y, √w, √h and the confidence go through a sigmoid and the class scores through a
softmax, bounds the paper's linear outputs only learn. One stride-16 cell is 16 px: S = 6 at
96 px, B = 2 as in the paper.

A detector's forward returns its raw outputs, one tensor; the detection task (cnnlab.tasks)
calls `detection_loss` and `candidates` on the module, which know the grid.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.errors import CnnlabError
from cnnlab.models.fast import conv_bn
from cnnlab.models.registry import ModelSpec, register_model

LAMBDA_COORD, LAMBDA_NOOBJ = 5.0, 0.5  # the paper's weights (section 2.2)
BOXES_PER_CELL = 2  # the paper's B
# Stages of 3x3 convolutions, a 2x2 max-pool before each stage but the first: stride 16 at the
# end. At 16 px a cell, 2.8% of the objects in `shapes` share their cell with another (YOLO
# keeps one object per cell, so about half of those are lost); at 32 px a cell, 14.7% would.
WIDTHS = ((16,), (32,), (64, 64), (128, 128), (256, 256, 256))
MIN_SIDE = 16  # four pools: a 1x1 grid
# What `cnnlab train` uses where the user chose no optimizer or lr, as for `ssd`: the choice of the
# measured `shapes` runs (docs/results.md). Measured on 32 `shapes` scenes (seed 0, batches of 16,
# constant lr): Nesterov SGD at its default 0.05 does not diverge here but lags, loss 13.0 -> 4.0
# in twelve steps against AdamW's 13.0 -> 1.7.
TRAINING = {"optimizer": "adamw", "lr": 2e-3}


def stages(in_channels: int, widths: Sequence[Sequence[int]]) -> nn.Sequential:
    """Stages of (3x3 convolution, BatchNorm, ReLU), a 2x2 max-pool on entering each stage but
    the first: the side shrinks by 2 ** (len(widths) - 1)."""
    layers: list[tuple[str, nn.Module]] = []
    c = in_channels
    for s, stage in enumerate(widths):
        if s > 0:
            layers.append((f"pool{s}", nn.MaxPool2d(2)))
        for d, width in enumerate(stage, start=1):
            layers += [(f"{name}{s}_{d}", m) for name, m in conv_bn(c, width)]
            c = width
    return nn.Sequential(OrderedDict(layers))


def paired_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of each box in a (..., 4) with the box at the same place in b (..., 4), both x1, y1,
    x2, y2 -> (...). (torchvision's `box_iou` pairs every box with every other.)"""
    wh = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp_min(0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area_a + area_b - inter).clamp_min(1e-9)


def clip_to_image(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Boxes (..., 4) x1, y1, x2, y2 cut to an image of size (H, W) (torchvision's
    `clip_boxes_to_image`, without importing torchvision: ~1.2 s, and the registry imports this file)."""
    h, w = size
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([x1.clamp(0, w), y1.clamp(0, h), x2.clamp(0, w), y2.clamp(0, h)], -1)


class YOLO(nn.Module):
    """Backbone -> a 1x1 convolution that makes each grid cell's B boxes and class scores.

    x: (N, C, H, W) -> raw outputs (N, B * 5 + K - 1, S_h, S_w): for each of the B boxes
    x, y, √w, √h, confidence (before their sigmoid), then the K - 1 object classes' scores
    (before their softmax). Class 0 is the background, which YOLO never predicts: an empty
    cell is said by a low confidence.
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        self.num_classes = num_classes  # background included
        self.image_size = image_size  # (H, W) in pixels
        self.features = stages(in_channels, WIDTHS)
        self.head = nn.Conv2d(WIDTHS[-1][-1], BOXES_PER_CELL * 5 + num_classes - 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def split(self, outputs: Tensor) -> tuple[Tensor, Tensor]:
        """Raw outputs -> boxes (N, S_h, S_w, B, 5) as x, y, √w, √h, confidence, each in (0, 1),
        and class probabilities (N, S_h, S_w, K - 1)."""
        cells = outputs.float().permute(0, 2, 3, 1)
        boxes = cells[..., : 5 * BOXES_PER_CELL].unflatten(-1, (BOXES_PER_CELL, 5)).sigmoid()
        return boxes, cells[..., 5 * BOXES_PER_CELL :].softmax(-1)

    def to_pixels(self, xywh: Tensor) -> Tensor:
        """Cell-relative (N, S_h, S_w, B, 4) x, y, √w, √h -> boxes x1, y1, x2, y2 in pixels."""
        rows, cols = xywh.shape[1:3]
        (h, w), device = self.image_size, xywh.device
        col = torch.arange(cols, device=device).view(1, 1, cols, 1)
        row = torch.arange(rows, device=device).view(1, rows, 1, 1)
        cx, cy = (col + xywh[..., 0]) * w / cols, (row + xywh[..., 1]) * h / rows
        bw, bh = xywh[..., 2] ** 2 * w, xywh[..., 3] ** 2 * h
        return torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)

    def encode(self, boxes: Tensor, labels: Tensor, grid: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The grid's targets for true boxes (N, M, 4) x1, y1, x2, y2 in pixels with labels
        (N, M) (-1: padding): has_object (N, S_h, S_w) bool; xywh (N, S_h, S_w, 4) the
        responsible cell's x, y, √w, √h; the true box (N, S_h, S_w, 4) in pixels; its class
        (N, S_h, S_w) among the K - 1 object classes. A box with no area (cropped away) is
        left out; of two boxes whose centres share a cell, the later one is kept."""
        (h, w), (rows, cols) = self.image_size, grid
        n = len(boxes)
        has_object = torch.zeros(n, rows, cols, dtype=torch.bool, device=boxes.device)
        xywh = boxes.new_zeros(n, rows, cols, 4)
        true_box = boxes.new_zeros(n, rows, cols, 4)
        cls = torch.zeros(n, rows, cols, dtype=torch.long, device=boxes.device)
        for m in range(boxes.shape[1]):  # one box per image at a time: no two writes to one cell
            box, label = boxes[:, m], labels[:, m]
            keep = (label > 0) & (box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1])
            cx, cy = (box[:, 0] + box[:, 2]) / 2 * cols / w, (box[:, 1] + box[:, 3]) / 2 * rows / h  # in cells
            col, row = cx.long().clamp(0, cols - 1), cy.long().clamp(0, rows - 1)
            i, r, c = torch.nonzero(keep).flatten(), row[keep], col[keep]
            sides = ((box[keep, 2:] - box[keep, :2]) / box.new_tensor([w, h])).sqrt()
            has_object[i, r, c] = True
            xywh[i, r, c] = torch.cat([torch.stack([cx[keep] - c, cy[keep] - r], 1), sides], 1)
            true_box[i, r, c] = box[keep]
            cls[i, r, c] = label[keep] - 1
        return has_object, xywh, true_box, cls

    def detection_loss(self, outputs: Tensor, boxes: Tensor, labels: Tensor) -> Tensor:
        """The paper's sum-squared loss (eq. 3, see the module's docstring), per image (mean
        over the batch). outputs: forward's; boxes (N, M, 4) in pixels, labels (N, M), -1 padding."""
        predicted, class_probs = self.split(outputs)
        has_object, xywh, true_box, cls = self.encode(boxes, labels, tuple(outputs.shape[-2:]))
        iou = paired_iou(self.to_pixels(predicted[..., :4]), true_box[..., None, :])  # (N, S_h, S_w, B)
        responsible = F.one_hot(iou.argmax(-1), BOXES_PER_CELL).bool() & has_object[..., None]
        coord = ((predicted[..., :4] - xywh[..., None, :]) ** 2).sum(-1)
        confidence = predicted[..., 4]
        classes = ((class_probs - F.one_hot(cls, self.num_classes - 1)) ** 2).sum(-1)
        total = (
            LAMBDA_COORD * coord[responsible].sum()
            + ((confidence - iou.detach()) ** 2)[responsible].sum()  # confidence learns the IoU
            + LAMBDA_NOOBJ * (confidence[~responsible] ** 2).sum()
            + classes[has_object].sum()
        )
        return total / len(outputs)

    def candidates(self, outputs: Tensor) -> tuple[Tensor, Tensor]:
        """Every predicted box before non-maximum suppression: boxes (N, A, 4) x1, y1, x2, y2 in
        pixels, clipped to the image, and their scores for each class (N, A, K), column 0
        (background) zero; A = S_h * S_w * B. score = confidence * Pr(class | object) (eq. 1)."""
        predicted, class_probs = self.split(outputs)
        boxes = clip_to_image(self.to_pixels(predicted[..., :4]), self.image_size)
        scores = F.pad(predicted[..., 4:5] * class_probs[..., None, :], (1, 0))
        return boxes.flatten(1, 3), scores.flatten(1, 3)


@register_model(
    family="yolo",
    paper="Redmon, Divvala, Girshick & Farhadi 2016, You Only Look Once: Unified, Real-Time Object Detection",
    reference_input=(3, 96, 96),
    reference_classes=4,
    reference_params=1_761_821,
    tasks=("detect",),
    training=TRAINING,
)
def yolo(spec: ModelSpec) -> nn.Module:
    """A YOLOv1-style grid detector: S x S cells of 16 px, B = 2 boxes each (Redmon et al. 2016).

    1,761,821 parameters for RGB -> 4 classes (the `shapes` data set), at any image size:
    3x3 convolutions 3-16 | 32 | 64-64 | 128-128 | 256-256-256 (no bias) 1,756,080, their
    BatchNorms 2,400, and the 1x1 head 256 -> 2 x 5 + 3 scores (with bias) 3,341.
    """
    if min(spec.height, spec.width) < MIN_SIDE:
        raise CnnlabError(f"yolo needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels (got {spec.height}x{spec.width}).")
    return YOLO(spec.channels, spec.num_classes, (spec.height, spec.width))
