"""The attack inside adversarial training: each batch is replaced by its adversarial version.

    pgd      Madry et al. 2018: min over weights of the max over the eps-ball of the loss; the
             inner max is approximated by PGD with `steps` steps of 2.5 * eps / steps.
    fgsm-rs  Wong, Rice & Kolter 2020 ("Fast is better than free"): one FGSM step of 1.25 * eps
             from a uniform random start in the ball; about as robust as PGD training on
             (Fashion-)MNIST at the cost of two forward/backward passes per batch.
"""

from __future__ import annotations

from torch import Tensor, nn

from cnnlab.perturb.pgd import pgd


def adversarial_batch(model: nn.Module, x: Tensor, y: Tensor, method: str, eps: float, steps: int) -> Tensor:
    """x (N, C, H, W) in [0, 1] -> its adversarial version for training on, same shape.

    The model is attacked in the mode the training loop has it in, train mode: the papers'
    released code does not switch to eval mode for the inner attack (BatchNorm uses the
    batch's statistics, as the forward pass that follows will).
    """
    if method == "pgd":
        return pgd(model, x, y, eps, steps=steps, step_size=2.5 * eps / steps, random_start=True)
    if method == "fgsm-rs":
        return pgd(model, x, y, eps, steps=1, step_size=1.25 * eps, random_start=True)
    raise ValueError(f"unknown adversarial training method {method!r}")  # TrainConfig.resolved() checked it
