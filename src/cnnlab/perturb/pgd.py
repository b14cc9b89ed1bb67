"""PGD, projected gradient descent (Madry, Makelov, Schmidt, Tsipras & Vladu 2018, eq. 2).

Start at a random point of the eps-ball around x, then repeat `steps` times: take a gradient
step that raises the loss, and project back onto the ball and the pixel range [0, 1].

    L-inf:  x <- Proj( x + a * sign(g) )            Proj clips each pixel to [x0 - eps, x0 + eps]
    L2:     x <- Proj( x + a * g / ||g||_2 )        Proj rescales delta to ||delta||_2 <= eps

With steps=1, step_size=1.25*eps and a random start this is "FGSM with random start"
(Wong, Rice & Kolter 2020, Algorithm 3), the fast adversarial training attack.

The loss is a classifier's cross-entropy unless `loss` names another: a detector's own loss on
the true boxes (climbing it makes the detector miss them) or a segmenter's per-pixel one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from cnnlab.errors import CnnlabError
from cnnlab.perturb.checks import check_batch, check_eps, check_images
from cnnlab.perturb.fgsm import Loss, input_gradient


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Any,
    eps: float,
    steps: int = 20,
    step_size: float | None = None,
    norm: str = "linf",
    random_start: bool = True,
    targeted: bool = False,
    loss: Loss | None = None,
) -> Tensor:
    """Adversarial images (N, C, H, W) in [0, 1] within `eps` of `x` (L-inf or L2).

    x: (N, C, H, W) pixels in [0, 1] on the model's device; y: (N,) true labels (untargeted:
    push away from them) or target labels (targeted: pull towards them); with `loss`, whatever
    targets it takes (`Task.loss`: `Targets` of boxes or masks), and the loss it gives is climbed.
    step_size defaults to 2.5 * eps / steps, the choice of Madry et al.'s `robustness` library:
    enough to cross the ball 2.5 times, so a start at its edge can still reach the far side.
    The model is used in the mode it is in (`model.eval()` for evaluation; adversarial
    training keeps it in train mode, as the papers' code does).
    """
    eps = check_eps(eps, norm)
    if loss is None:
        check_batch(x, y)
    else:
        check_images(x)
    if steps < 1:
        raise CnnlabError(f"steps must be at least 1, got {steps}.")
    a = 2.5 * eps / steps if step_size is None else step_size
    x0 = x.detach()
    sign = -1.0 if targeted else 1.0

    if norm == "linf":
        # The pixels x0 + delta may take: within eps of x0 and inside [0, 1]; one clamp per step
        # projects onto both at once (the intersection of two boxes is a box).
        low, high = (x0 - eps).clamp_(min=0), (x0 + eps).clamp_(max=1)
        x_adv = x0 + _random_start(x0, eps, norm) if random_start and eps > 0 else x0.clone()
        x_adv = torch.clamp(x_adv, low, high)
        for _ in range(steps):
            g = input_gradient(model, x_adv, y, loss)  # (N, C, H, W)
            x_adv = torch.clamp(x_adv.add_(g.sign_(), alpha=sign * a), low, high)
        return x_adv.detach()

    delta = _random_start(x0, eps, norm) if random_start and eps > 0 else torch.zeros_like(x0)
    delta = (x0 + delta).clamp_(0, 1) - x0  # keep x0 + delta a valid image
    for _ in range(steps):
        g = input_gradient(model, x0 + delta, y, loss)  # (N, C, H, W)
        delta = _l2_project(delta + sign * a * g / _l2(g).clamp_min(1e-12), eps)
        delta = (x0 + delta).clamp_(0, 1) - x0
    return (x0 + delta).detach()


def _l2(t: Tensor) -> Tensor:
    """Per-image L2 norm, shaped (N, 1, 1, 1) to broadcast over the image."""
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.ndim - 1)))


def _l2_project(delta: Tensor, eps: float) -> Tensor:
    return delta * (eps / _l2(delta).clamp_min(1e-12)).clamp(max=1.0)


def _random_start(x: Tensor, eps: float, norm: str) -> Tensor:
    """A uniform point of the L-inf cube, or a point of the L2 ball at a uniform radius in
    a uniform direction (a Gaussian, normalised)."""
    if norm == "linf":
        return torch.empty_like(x).uniform_(-eps, eps)
    direction = torch.randn_like(x)
    radius = torch.rand(len(x), *([1] * (x.ndim - 1)), device=x.device, dtype=x.dtype) * eps
    return direction / _l2(direction).clamp_min(1e-12) * radius
