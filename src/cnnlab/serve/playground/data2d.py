"""Five 2-D data sets with two classes, points in about [-1, 1]^2, seeded.

    linear   a straight line separates the classes (a margin of 0.1 each side)
    blobs    two Gaussian clouds, also linearly separable up to their overlap
    circles  a disc (radius < 0.4) inside a ring (0.7 to 1): no line separates them
    xor      the four quadrants, opposite ones alike: the problem that stopped the perceptron
    spirals  two interleaved spirals: needs depth or many neurons

`noise` is the standard deviation of Gaussian jitter added to every point, in the same units
(0.1 moves a point by a twentieth of the square's side). Half the points train, half test,
as TensorFlow Playground's default split.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from cnnlab.errors import CnnlabError, unknown_name

DATASETS = ("linear", "blobs", "circles", "xor", "spirals")
MIN_POINTS, MAX_POINTS = 20, 2000
MAX_NOISE = 0.5


def make_points(name: str, n: int = 400, noise: float = 0.1, seed: int = 0) -> tuple[Tensor, Tensor]:
    """x: (n, 2) float32, y: (n,) float32 in {0, 1}."""
    if name not in DATASETS:
        raise unknown_name("data set", name, list(DATASETS))
    if not MIN_POINTS <= n <= MAX_POINTS:
        raise CnnlabError(f"size must be between {MIN_POINTS} and {MAX_POINTS} points, got {n}.")
    if not 0 <= noise <= MAX_NOISE:
        raise CnnlabError(f"noise must be between 0 and {MAX_NOISE}, got {noise}.")
    g = torch.Generator().manual_seed(seed)
    half = n // 2
    labels = torch.cat([torch.zeros(half), torch.ones(n - half)])
    if name == "linear":
        x = _uniform(4 * n, g)
        side = x @ torch.tensor([0.8, -0.6]) + 0.1  # signed distance to the line
        x = torch.cat([x[side < -0.1][:half], x[side > 0.1][: n - half]])
    elif name == "blobs":
        centre = torch.where(labels[:, None] > 0, torch.tensor([0.45, 0.45]), torch.tensor([-0.45, -0.45]))
        x = centre + 0.2 * torch.randn(n, 2, generator=g)
    elif name == "circles":
        r = torch.where(labels > 0, 0.7 + 0.3 * torch.rand(n, generator=g), 0.4 * torch.rand(n, generator=g))
        x = _polar(r, 2 * math.pi * torch.rand(n, generator=g))
    elif name == "xor":
        x = _uniform(4 * n, g)
        x = x[(x.abs() > 0.05).all(1)]  # a small gap along the axes, as TF Playground's padding
        positive = x[:, 0] * x[:, 1] > 0
        x = torch.cat([x[positive][:half], x[~positive][: n - half]])
    else:  # spirals: radius grows with the angle; the second arm is the first turned by pi
        t = torch.rand(n, generator=g)
        x = _polar(t, 1.75 * 2 * math.pi * t + math.pi * labels)
    x = x + noise * torch.randn(n, 2, generator=g)
    order = torch.randperm(n, generator=g)
    return x[order].float(), labels[order].float()


def split(x: Tensor, y: Tensor) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """First half trains, second half tests (the points are already shuffled)."""
    h = len(x) // 2
    return (x[:h], y[:h]), (x[h:], y[h:])


def _uniform(n: int, g: torch.Generator) -> Tensor:
    return 2 * torch.rand(n, 2, generator=g) - 1


def _polar(r: Tensor, angle: Tensor) -> Tensor:
    return torch.stack([r * torch.cos(angle), r * torch.sin(angle)], 1)
