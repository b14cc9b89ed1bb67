"""Reference attacks from a maintained library (torchattacks, Kim 2020), for checking ours.

torchattacks is the optional extra `reference` (pip install -e '.[reference]'); it is imported
only here, only when asked for. Its attacks also take pixels in [0, 1], like cnnlab models.

AutoAttack (Croce & Hein 2020) is the standard of trust for robust accuracy: an ensemble of
APGD-CE, APGD-T, FAB-T and Square, each run on the images the previous ones did not break.
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor, nn

from cnnlab.errors import CnnlabError
from cnnlab.perturb.checks import check_batch, check_eps


def torchattacks() -> ModuleType:
    try:
        import torchattacks as ta
    except ImportError:
        raise CnnlabError(
            "the reference attacks need torchattacks: install it with pip install -e '.[reference]'."
        ) from None
    return ta


def reference_pgd(
    model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int = 20, step_size: float | None = None,
    random_start: bool = True,
) -> Tensor:
    """torchattacks' L-inf PGD with the same settings as `cnnlab.perturb.pgd` (model in eval mode)."""
    eps = check_eps(eps)
    check_batch(x, y)
    attack = torchattacks().PGD(model, eps=eps, alpha=2.5 * eps / steps if step_size is None else step_size,
                                steps=steps, random_start=random_start)
    return attack(x, y).detach()


def autoattack(model: nn.Module, x: Tensor, y: Tensor, eps: float, norm: str = "linf", seed: int = 0) -> Tensor:
    """Adversarial images from torchattacks' standard AutoAttack (L-inf or L2) at radius eps."""
    eps = check_eps(eps, norm)
    check_batch(x, y)
    with torch.no_grad():
        num_classes = int(model(x[:1]).shape[1])
    attack = torchattacks().AutoAttack(
        model, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps, version="standard", n_classes=num_classes, seed=seed,
    )
    return attack(x, y).detach()
