"""Does the model remember its training images? Membership inference on held-out pairs.

Members are images of the run's training split, non-members images of its test split, the same
number of each. An attacker who sees only the model's loss on an image guesses "member" when the
score is high; we report the ROC AUC (0.5 = no leak) and, as Carlini et al. 2022 ("Membership
Inference Attacks From First Principles", S&P) insist, the true positive rate at a 1% false
positive rate: how many members are exposed with few false accusations.

- loss: Yeom, Giacomelli, Fredrikson & Jha 2018 ("Privacy Risk in Machine Learning: Analyzing
  the Connection to Overfitting", CSF): score = -loss(x). Members were fit, so their loss is low.
- calibrated: Watson, Guo, Cormode & Sablayrolles 2022 ("On the Importance of Difficulty
  Calibration in Membership Inference Attacks", ICLR): score = loss_ref(x) - loss(x), where
  loss_ref says how hard x is anyway, so an easy non-member is no longer mistaken for a member.
  loss_ref comes from a reference run that never saw x (`reference=`, e.g. a model trained on the
  val split) or, without one, from the model itself on noisy neighbours of x (Mattern et al.
  2023, neighbourhood comparison): a member sits in a sharp dip of the loss, a non-member does not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.tasks.classify import predict_logits

NEIGHBOURS = 8  # noisy copies per image for the neighbourhood calibration
NOISE = 0.05  # their Gaussian pixel noise (std, pixels in [0, 1]): small against the image


@dataclass
class AttackResult:
    attack: str
    auc: float
    tpr_at_1pct_fpr: float
    advantage: float  # max over thresholds of TPR - FPR (Yeom et al.'s membership advantage)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Membership:
    """Both attacks on the same members and non-members, and the losses they start from."""

    members: int
    nonmembers: int
    member_loss_mean: float  # mean cross-entropy of the members
    nonmember_loss_mean: float
    calibration: str  # what said how hard each image is anyway
    attacks: list[AttackResult]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def per_example_loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """The loss of each image x (N, C, H, W) in [0, 1] with label y (N,), as a logit margin (N,):
    m = logsumexp_{j != y} z_j - z_y, and cross-entropy = softplus(m), an increasing function of m.
    Ranking by m is ranking by the loss, but m does not round to 0 in float32 when the model is
    very sure (Carlini et al. 2022 scale confidences the same way), so an overfit model's most
    confident members stay distinguishable at 1% false positives."""
    z = predict_logits(model, x).double()
    z_y = z.gather(1, y.view(-1, 1)).squeeze(1)
    others = z.scatter(1, y.view(-1, 1), float("-inf"))
    return torch.logsumexp(others, dim=1) - z_y


def neighbourhood_loss(
    model: nn.Module, x: Tensor, y: Tensor, k: int = NEIGHBOURS, noise: float = NOISE, seed: int = 0,
) -> Tensor:
    """Mean loss margin (N,) of the model on k noisy copies of each image (clipped to [0, 1])."""
    g = torch.Generator().manual_seed(seed)
    total = torch.zeros(len(y))
    for _ in range(k):
        noisy = (x + noise * torch.randn(x.shape, generator=g)).clamp(0, 1)
        total += per_example_loss(model, noisy, y)
    return total / k


def attack_metrics(name: str, member_scores: Tensor, nonmember_scores: Tensor, fpr_at: float = 0.01) -> AttackResult:
    """ROC of 'member' vs 'non-member' from scores (higher = more likely a member)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    labels = np.r_[np.ones(len(member_scores)), np.zeros(len(nonmember_scores))]
    scores = np.r_[member_scores.numpy(), nonmember_scores.numpy()]
    fpr, tpr, _ = roc_curve(labels, scores)
    return AttackResult(
        attack=name,
        auc=float(roc_auc_score(labels, scores)),
        tpr_at_1pct_fpr=float(tpr[fpr <= fpr_at].max()),
        advantage=float((tpr - fpr).max()),
    )


def membership_inference(
    model: nn.Module, members: tuple[Tensor, Tensor], nonmembers: tuple[Tensor, Tensor], reference: nn.Module | None = None
) -> Membership:
    """Both attacks on (x, y) members and non-members; `reference` a model that saw neither."""
    loss_m, loss_n = per_example_loss(model, *members), per_example_loss(model, *nonmembers)
    if reference is not None:
        ref_m, ref_n = per_example_loss(reference, *members), per_example_loss(reference, *nonmembers)
        calibration = "reference run's loss (Watson et al. 2022)"
    else:
        ref_m, ref_n = neighbourhood_loss(model, *members), neighbourhood_loss(model, *nonmembers)
        calibration = f"mean loss on {NEIGHBOURS} neighbours with pixel noise {NOISE} (neighbourhood comparison)"
    attacks = [
        attack_metrics("loss threshold (Yeom et al. 2018)", -loss_m, -loss_n),
        attack_metrics("calibrated per example (Watson et al. 2022)", ref_m - loss_m, ref_n - loss_n),
    ]
    return Membership(
        members=len(loss_m),
        nonmembers=len(loss_n),
        member_loss_mean=float(F.softplus(loss_m).mean()),  # cross-entropy = softplus(margin)
        nonmember_loss_mean=float(F.softplus(loss_n).mean()),
        calibration=calibration,
        attacks=attacks,
    )
