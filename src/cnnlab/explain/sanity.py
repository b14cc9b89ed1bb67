"""Are the explanations real? Two checks, on a sample of test images.

Model randomization (Adebayo et al. 2018, "Sanity Checks for Saliency Maps", sec. 3.1): explain
the same images with the same architecture whose weights are re-initialised. A map that
depends on what the model learned must change; one that barely changes (Spearman rank
correlation of the two |maps| above FLAG_RHO) is showing the image, an edge detector, not
the model, and is flagged.

Deletion (Petsiuk, Das & Saenko 2018, "RISE", sec. 4.1): set pixels to 0 (black, the same
baseline as the attributions) from most to least important and follow the probability of the
class predicted on the intact image. A faithful map makes it fall fast: its area under the
curve (AUC, mean probability over the deletion steps) is lower than that of a random order.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from cnnlab.explain.attribute import METHODS, attribute
from cnnlab.models import eval_mode

FLAG_RHO = 0.5  # Adebayo et al. call maps at this similarity to a random model's "visually similar"
DELETION_STEPS = 20  # 5% of the pixels per step


@dataclass
class MethodSanity:
    method: str
    randomization_rho: float  # mean Spearman correlation, trained vs re-initialised model
    randomization_flagged: bool  # rho >= FLAG_RHO: the map barely depends on the weights
    deletion_auc: float  # lower = the map found the pixels the prediction needs
    deletion_curve: list[float]


@dataclass
class Sanity:
    methods: list[MethodSanity]
    random_auc: float  # the deletion curve's area for a random pixel order: the bar to beat
    random_curve: list[float]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def randomized_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """The same architecture with fresh weights: every layer that can re-initialise does
    (normalisation buffers such as cnnlab's Normalize stay: they are data, not learned)."""
    fresh = copy.deepcopy(model)
    torch.manual_seed(seed)
    for module in fresh.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        if hasattr(module, "reset_running_stats"):
            module.reset_running_stats()
    return fresh


def spearman(a: Tensor, b: Tensor) -> float:
    """Rank correlation of two maps of the same shape; ties get their average rank."""
    from scipy.stats import spearmanr

    a, b = a.flatten(), b.flatten()
    if a.min() == a.max() or b.min() == b.max():
        return 0.0  # a constant map (Grad-CAM of a random model can be all 0) ranks nothing
    return float(spearmanr(a.numpy(), b.numpy()).statistic)


def _pixel_importance(a: Tensor) -> Tensor:
    return a.abs().sum(1).flatten(1)  # (N, C, H, W) -> (N, H*W)


def deletion_curve(model: nn.Module, x: Tensor, target: Tensor, order: Tensor, steps: int = DELETION_STEPS) -> Tensor:
    """x: (N, C, H, W); order: (N, H*W) pixel indices, first deleted first -> (steps + 1,)
    mean probability of `target` after deleting 0, 1/steps, ..., all of the pixels."""
    n, c, h, w = x.shape
    probs = []
    with torch.no_grad(), eval_mode(model):
        for s in range(steps + 1):
            k = round(s * h * w / steps)
            keep = torch.ones(n, h * w)
            keep.scatter_(1, order[:, :k], 0.0)
            xs = x * keep.view(n, 1, h, w)
            probs.append(model(xs).softmax(1).gather(1, target[:, None]).mean())
    return torch.stack(probs)


def auc(curve: Tensor) -> float:
    """Area under a curve sampled at evenly spaced points of [0, 1] (trapezoid rule)."""
    return float(torch.trapezoid(curve, dx=1.0 / (len(curve) - 1)))


def sanity_checks(
    model: nn.Module, x: Tensor, methods: tuple[str, ...] = METHODS, seed: int = 0, layer: str | None = None
) -> Sanity:
    """Both checks for each method on images x (N, C, H, W) in [0, 1], explaining the class
    the trained model predicts."""
    with torch.no_grad(), eval_mode(model):
        target = model(x).argmax(1)
    fresh = randomized_copy(model, seed)
    g = torch.Generator().manual_seed(seed)
    h_w = x.shape[-1] * x.shape[-2]
    random_order = torch.stack([torch.randperm(h_w, generator=g) for _ in range(len(x))])
    random_curve = deletion_curve(model, x, target, random_order)
    results = []
    for method in methods:
        trained = _pixel_importance(attribute(model, x, target, method, layer=layer))
        randomized = _pixel_importance(attribute(fresh, x, target, method, layer=layer))
        rho = sum(spearman(a, b) for a, b in zip(trained, randomized)) / len(x)
        curve = deletion_curve(model, x, target, trained.argsort(1, descending=True))
        results.append(MethodSanity(method, rho, rho >= FLAG_RHO, auc(curve), curve.tolist()))
    return Sanity(results, auc(random_curve), random_curve.tolist())
