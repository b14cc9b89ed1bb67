"""Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", eq. 1-2), for any score a model's outputs give.

A^k: the K maps of a convolution layer; alpha_k = mean over (i, j) of d y / d A^k_ij, how much
map k matters to the score y; the map is ReLU(sum_k alpha_k A^k), kept positive because we want
what speaks *for* the score. It has the layer's resolution (7x7 for LeNet's last conv on 28x28,
2x2 for ResNet-18 at 64x64) and is upsampled bilinearly to the image.

The score y differs by task; the rest is the same (the paper's section 3 already applies it to
captions and answers):

    classify   y = the logit of class c                                    `gradcam`
    detect     y = one proposed box's score for its class (section 2 of     `box_gradcam`
               the detection task: confidence x Pr(class) for YOLO, the
               softmax probability for SSD), of the box chosen after NMS
    segment    y = the logits of class c summed over a region's pixels      `region_gradcam`
               (the whole image by default), as in Vinogradova et al. 2020,
               "Towards Interpretable Semantic Segmentation via Gradient-weighted Class Activation Mapping"

Its layer is the last convolution of the backbone: the coarsest maps that still see the image,
before the head turns them into scores (for a classifier, its last convolution).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.errors import CnnlabError
from cnnlab.models import find_layer, recording

# The modules that turn features into a task's outputs: the detectors' `head` (yolo, ssd), the
# segmenters' per-stage `scores` (fcn). Grad-CAM looks at the last convolution before them.
HEADS = ("head", "scores")


def backbone_layer(model: nn.Module) -> str:
    """The name of the last Conv2d outside the model's head (HEADS, at any depth: cnnlab wraps its
    nets, `net.head`): for a classifier, simply its last."""
    names = [n for n, m in model.named_modules()
             if isinstance(m, nn.Conv2d) and not any(part in HEADS for part in n.split("."))]
    if not names:
        return find_layer(model, None, hint=" to explain; name one with --layer (layer=...)")[0]
    return names[-1]


def cam(model: nn.Module, x: Tensor, score: Callable[[Tensor], Tensor], layer: str | None = None) -> Tensor:
    """x: (N, C, H, W); score: the model's outputs -> one scalar, the sum of each image's score
    -> (N, 1, H, W) maps, >= 0.

    `layer`: a name from `model.named_modules()`; None = `backbone_layer`. Our own hooks (not
    Captum's LayerGradCam) so that a wrong layer is an error that names it."""
    name, module = find_layer(model, layer or backbone_layer(model), hint=" to explain; name one with --layer (layer=...)")
    with recording([(name, module)]) as seen:
        outputs = model(x)
    maps = seen[name]  # (N, K', h, w); still in the graph
    if not isinstance(maps, Tensor) or not maps.requires_grad:
        raise CnnlabError(
            f"layer '{name}' gives no gradient (its output is detached or not a tensor); choose another layer."
        )
    (grads,) = torch.autograd.grad(score(outputs), maps)  # (N, K', h, w)
    alpha = grads.mean(dim=(2, 3), keepdim=True)  # (N, K', 1, 1)
    heat = F.relu((alpha * maps).sum(1, keepdim=True)).detach()  # (N, 1, h, w)
    return F.interpolate(heat, size=x.shape[-2:], mode="bilinear", align_corners=False)


def gradcam(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None) -> Tensor:
    """A classifier's Grad-CAM. x: (N, C, H, W), target: (N,) class indices -> (N, 1, H, W)."""
    return cam(model, x, lambda logits: logits.gather(1, target[:, None]).sum(), layer)


def box_gradcam(model: nn.Module, detector: nn.Module, x: Tensor, target: Tensor, layer: str | None = None) -> Tensor:
    """A detector's Grad-CAM of one proposed box per image. x: (N, C, H, W); target: (N, 2)
    int64, each image's box (an index into `detector.candidates`' A boxes) and class
    -> (N, 1, H, W). `detector` is the module with `candidates` (`Detect.detector`)."""
    def score(outputs: Tensor) -> Tensor:
        _, scores = detector.candidates(outputs)  # (N, A, K)
        return scores[torch.arange(len(scores)), target[:, 0], target[:, 1]].sum()

    return cam(model, x, score, layer)


def region_gradcam(model: nn.Module, x: Tensor, target: Tensor, region: Tensor | None = None,
                   layer: str | None = None) -> Tensor:
    """A segmenter's Grad-CAM of a class over a region. x: (N, C, H, W); target: (N,) classes;
    region: (N, H, W) bool, the pixels whose logits are summed (None: every pixel) -> (N, 1, H, W)."""
    def score(logits: Tensor) -> Tensor:  # (N, K, H, W)
        chosen = logits[torch.arange(len(logits)), target]  # (N, H, W)
        return chosen.sum() if region is None else (chosen * region).sum()

    return cam(model, x, score, layer)


def chosen_boxes(detector: nn.Module, outputs: Tensor, found: list[dict[str, Tensor]], k: int = 0) -> Tensor:
    """(N, 2) the candidate index and class of each image's k-th detection in `found` (the
    task's `decode` of `outputs`, best first): what `box_gradcam` explains. NMS keeps some of the
    candidates; this finds which one by its box and score, the very numbers it kept."""
    boxes, scores = detector.candidates(outputs.detach())
    rows = []
    for i, detected in enumerate(found):
        if k >= len(detected["scores"]):
            raise CnnlabError(f"image {i} has {len(detected['scores'])} detected boxes; choose --box below that.")
        label = int(detected["labels"][k])
        same = (scores[i, :, label] == detected["scores"][k]) & (boxes[i] == detected["boxes"][k]).all(1)
        rows.append([int(same.nonzero()[0]), label])
    return torch.tensor(rows, dtype=torch.long)
