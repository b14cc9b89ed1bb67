"""Training against a spurious correlation: give the rare groups their say in the loss.

- reweight: each example's loss is weighted by N / (G * n_g), the inverse of its group's share
  of the training set, so every group counts as much as if all G groups were the same size
  (importance weighting; Sagawa et al. 2020 use it as their "upweighting" baseline).
- groupdro: Sagawa, Koh, Hashimoto & Liang 2020, "Distributionally Robust Neural Networks for
  Group Shifts" (ICLR), Algorithm 1. Keep a distribution q over groups; each step
  q_g <- q_g * exp(eta * loss_g) (then normalise) and minimise sum_g q_g * loss_g, so the
  group doing worst gets the most weight: an online estimate of the worst-group loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from cnnlab.data.groups import GroupFn, dataset_groups
from cnnlab.errors import CnnlabError

PerExample = Callable[[Tensor, Tensor], Tensor]  # (outputs, targets) -> (N,) loss of each image

GROUPDRO_STEP = 0.01  # eta_q of Sagawa et al. 2020 (their default step size for q)


class GroupLoss:
    """The training loss of `--mitigate reweight|groupdro`; state (q) is saved in checkpoints."""

    def __init__(self, method: str, group_fn: GroupFn, counts: Tensor, per_example: PerExample) -> None:
        self.method, self.group_fn, self.per_example = method, group_fn, per_example
        present = counts > 0
        # reweight: N / (G * n_g); groups absent from the training set get weight 0
        self.weights = torch.where(present, counts.sum() / (present.sum() * counts.clamp_min(1)), 0.0).float()
        self.q = present.float() / present.sum()  # groupdro: start uniform over present groups

    def groups(self, x: Tensor, y: Tensor) -> Tensor:
        """Group ids (N,) of a batch; call it before augmentation changes the pixels."""
        return self.group_fn(x, y)

    def __call__(self, logits: Tensor, y: Tensor, g: Tensor) -> Tensor:
        losses = self.per_example(logits, y)  # (N,): the task's loss of each image
        if self.method == "reweight":
            return (self.weights.to(losses.device)[g] * losses).mean()
        num_groups = len(self.q)
        self.q = self.q.to(losses.device)
        sums = torch.zeros(num_groups, device=losses.device).index_add_(0, g, losses)
        counts = torch.bincount(g, minlength=num_groups).float()
        group_loss = sums / counts.clamp_min(1)  # (G,) mean loss of each group in this batch
        with torch.no_grad():  # q is the adversary's, not a parameter to differentiate
            self.q = self.q * torch.exp(GROUPDRO_STEP * group_loss.detach() * (counts > 0))
            self.q = self.q / self.q.sum()
        return (self.q * group_loss).sum()

    def state_dict(self) -> dict[str, Any]:
        return {"q": self.q.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.q = state["q"]


def make_group_loss(method: str, dataset: str, x: Tensor, y: Tensor, per_example: PerExample) -> GroupLoss | None:
    """The loss of `--mitigate method` for training images x (N, C, H, W), y (N,); None for 'none'."""
    if method == "none":
        return None
    own = dataset_groups(dataset)
    if own is None:
        raise CnnlabError(f"--mitigate {method} needs a dataset with groups (tinted-fashion-mnist); {dataset} defines none.")
    group_fn, names = own
    ids = torch.cat([group_fn(x[i : i + 4096], y[i : i + 4096]) for i in range(0, len(y), 4096)])
    counts = torch.bincount(ids.cpu(), minlength=len(names(["?"] * (int(y.max()) + 1))))
    return GroupLoss(method, group_fn, counts.float(), per_example)
