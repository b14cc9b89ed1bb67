"""Adversarial robustness: attacks, robust accuracy, adversarial training's attack, backdoors.

Every function works in pixel space: images (N, C, H, W) in [0, 1], eps a radius in those
pixels, any `nn.Module` that takes such pixels (cnnlab models normalise in their first layer).

    from cnnlab.attack import fgsm, pgd
    x_adv = pgd(model.eval(), x, y, eps=0.1, steps=20)
"""

from __future__ import annotations

from cnnlab.perturb.fgsm import fgsm
from cnnlab.perturb.pgd import pgd

__all__ = ["fgsm", "pgd"]
