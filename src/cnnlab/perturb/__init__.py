"""Pixel-space perturbations of a model's input: FGSM and PGD.

Below both training (adversarial training attacks each batch) and the attack analyses
(robust accuracy per eps): images (N, C, H, W) in [0, 1], eps a radius in those pixels.
"""

from __future__ import annotations

from cnnlab.perturb.fgsm import fgsm, input_gradient
from cnnlab.perturb.pgd import pgd

__all__ = ["fgsm", "input_gradient", "pgd"]
