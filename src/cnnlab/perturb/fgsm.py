"""FGSM, the fast gradient sign method (Goodfellow, Shlens & Szegedy 2015, eq. 3).

One step of size eps in the direction that increases the loss fastest under an L-inf budget:

    x_adv = clip_[0,1]( x + eps * sign(grad_x loss(model(x), y)) )

Targeted (Kurakin et al. 2017): step *down* the loss of the target class instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.perturb.checks import check_batch, check_eps

# A task's loss: raw outputs and targets -> a scalar to climb (`Task.loss` is one).
Loss = Callable[[Tensor, Any], Tensor]


def input_gradient(model: nn.Module, x: Tensor, y: Any, loss: Loss | None = None) -> Tensor:
    """d loss / d x, (N, C, H, W). `loss(outputs, y)` -> a scalar; None: cross-entropy with
    labels y (N,), summed, not averaged, so each image's gradient does not shrink with the batch
    size. Only the input's gradient is asked for, so autograd skips every weight gradient and
    `.grad` of the parameters is left untouched."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        outputs = model(x)
        value = F.cross_entropy(outputs, y, reduction="sum") if loss is None else loss(outputs, y)
        (grad,) = torch.autograd.grad(value, x)
    return grad


def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float, targeted: bool = False) -> Tensor:
    """Adversarial images (N, C, H, W) in [0, 1], at most `eps` from `x` in L-inf.

    x: (N, C, H, W) pixels in [0, 1] on the model's device; y: (N,) true labels, or target
    labels when `targeted`. The model is used in the mode it is in (call `model.eval()` to
    attack the deployed model).
    """
    eps = check_eps(eps)
    check_batch(x, y)
    direction = input_gradient(model, x, y).sign()
    if targeted:
        direction = -direction
    return (x + eps * direction).clamp_(0, 1).detach()
