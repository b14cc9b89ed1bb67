"""The checks every attack makes before it spends a gradient: one clear sentence per mistake."""

from __future__ import annotations

import math

from torch import Tensor

from cnnlab.errors import CnnlabError

NORMS = ("linf", "l2")


def check_eps(eps: float, norm: str = "linf") -> float:
    """eps is a radius in pixel space: L-inf in [0, 1]; L2 at least 0 (a few units on 28x28)."""
    if norm not in NORMS:
        raise CnnlabError(f"norm must be linf or l2, got '{norm}'.")
    if not isinstance(eps, (int, float)) or not math.isfinite(eps):
        raise CnnlabError(f"eps must be a number, got {eps!r}.")
    if norm == "linf" and not 0 <= eps <= 1:
        raise CnnlabError(
            f"eps {eps} is outside [0, 1]: pixels are in [0, 1], so an L-inf eps is a fraction of the "
            "pixel range (8/255 = 0.031 is common; 0.1 is large for Fashion-MNIST)."
        )
    if norm == "l2" and eps < 0:
        raise CnnlabError(f"eps {eps} is negative; an L2 radius must be 0 or more.")
    return float(eps)


def check_batch(x: Tensor, y: Tensor) -> None:
    """Images (N, C, H, W) in [0, 1] and their labels (N,)."""
    check_images(x)
    if y.ndim != 1 or len(y) != len(x):
        raise CnnlabError(f"labels must be shaped ({len(x)},) to match the images, got {tuple(y.shape)}.")


def check_images(x: Tensor) -> None:
    """Images (N, C, H, W) in [0, 1]: what every attack perturbs, whatever its targets."""
    if x.ndim != 4:
        raise CnnlabError(f"images must be a batch shaped (N, C, H, W), got shape {tuple(x.shape)}.")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise CnnlabError(
            f"images must hold pixels in [0, 1] (got {x.min().item():.3g} to {x.max().item():.3g}); "
            "cnnlab models normalise inside their first layer, so pass raw pixels."
        )
