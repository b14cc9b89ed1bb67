"""Robust accuracy: the share of images still classified correctly after an attack of radius eps.

    robust_accuracy(model, x, y, "pgd", [0.02, 0.05, 0.1]).points -> [RobustPoint(eps=0, ...), ...]

eps = 0 (no attack) is always measured first: it is the clean accuracy the curve starts from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from cnnlab.errors import CnnlabError, unknown_name
from cnnlab.models import check_model_fits, eval_mode
from cnnlab.perturb.checks import check_batch, check_eps
from cnnlab.perturb.fgsm import fgsm
from cnnlab.perturb.pgd import pgd

ATTACKS = ("fgsm", "pgd", "autoattack")


@dataclass
class RobustPoint:
    eps: float
    accuracy: float  # share of the n images classified correctly after the attack
    n: int
    seconds: float  # wall time of the attack at this eps

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class Robustness:
    """One attack at several radii on the same n images; points[0] is eps = 0, the clean accuracy."""

    attack: str
    norm: str
    steps: int | None  # PGD's steps; None for the one-step FGSM and for AutoAttack's own schedule
    n: int
    points: list[RobustPoint]

    @property
    def label(self) -> str:
        """'pgd-20', 'fgsm': how curves and tables name the attack."""
        return f"{self.attack}-{self.steps}" if self.steps is not None else self.attack

    def to_dict(self) -> dict[str, object]:
        return {"attack": self.attack, "norm": self.norm, "steps": self.steps, "n": self.n,
                "points": [p.to_dict() for p in self.points]}


def check_attack(attack: str) -> str:
    if attack not in ATTACKS:
        raise unknown_name("attack", attack, list(ATTACKS))
    return attack


def parse_eps(text: str, norm: str = "linf") -> list[float]:
    """'0.02,0.05,0.1' -> [0.02, 0.05, 0.1], each checked to be a radius of `norm` in pixel space."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CnnlabError(f"--eps must be numbers separated by commas, like 0.02,0.05,0.1; got '{text}'.") from None
    if not values:
        raise CnnlabError("--eps needs at least one value, like 0.02,0.05,0.1.")
    return [check_eps(v, norm) for v in values]


def attack_images(
    model: nn.Module, x: Tensor, y: Tensor, attack: str, eps: float, steps: int = 20, norm: str = "linf",
) -> Tensor:
    """x_adv (N, C, H, W) in [0, 1] for one batch, by name: fgsm, pgd (ours) or autoattack."""
    if attack == "fgsm":
        if norm != "linf":
            raise CnnlabError("fgsm is an L-inf attack; use --attack pgd for --norm l2.")
        return fgsm(model, x, y, eps)
    if attack == "pgd":
        return pgd(model, x, y, eps, steps=steps, norm=norm)
    if attack == "autoattack":
        from cnnlab.attack.reference import autoattack

        return autoattack(model, x, y, eps, norm=norm)
    raise unknown_name("attack", attack, list(ATTACKS))


def robust_accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attack: str = "pgd",
    eps: Sequence[float] = (0.02, 0.05, 0.1),
    steps: int = 20,
    norm: str = "linf",
    batch_size: int = 500,
    seed: int = 0,
) -> Robustness:
    """Accuracy of `model` (put in eval mode) on x (N, C, H, W) in [0, 1], y (N,), under `attack`
    at each eps; the first point is eps = 0, the clean accuracy. Batches of `batch_size` images
    are attacked on the model's device. `seed` fixes the random starts."""
    import time

    check_attack(attack)
    radii = [check_eps(e, norm) for e in eps]
    check_batch(x, y)
    device = next(model.parameters(), torch.empty(0)).device
    check_model_fits(model, x.shape[1:])
    points = []
    with eval_mode(model):
        for e in [0.0, *sorted(set(radii) - {0.0})]:
            torch.manual_seed(seed)
            start, correct = time.perf_counter(), 0
            for i in range(0, len(x), batch_size):
                xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
                xa = xb if e == 0 else attack_images(model, xb, yb, attack, e, steps, norm)
                with torch.no_grad():
                    correct += int((model(xa).argmax(1) == yb).sum())
            points.append(RobustPoint(e, correct / max(len(x), 1), len(x), time.perf_counter() - start))
    return Robustness(attack, norm, steps if attack == "pgd" else None, len(x), points)
