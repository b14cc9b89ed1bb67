"""The optimizer and learning-rate schedule a `TrainConfig` names.

Every schedule steps once per batch (not per epoch), so a run resumed mid-epoch continues
the schedule exactly where it stopped.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from cnnlab.config import TrainConfig


def make_optimizer(model: nn.Module, cfg: TrainConfig, betas: tuple[float, float] = (0.9, 0.999)) -> Optimizer:
    """SGD with Nesterov momentum, Adam or AdamW (`betas`: torch's default unless a task asks
    for others, a GAN's 0.5). Weight decay skips biases and norm weights (1-D tensors):
    decaying them only fights the normalisation (as in airbench, timm)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=betas)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=betas)


def make_schedule(optimizer: Optimizer, cfg: TrainConfig, total_steps: int) -> LRScheduler:
    """onecycle: warm up over the first 25% then anneal (Smith & Topin 2019);
    cosine: anneal from lr to 0 (Loshchilov & Hutter 2017); step: x0.1 at 50% and 75% of
    training (He et al. 2016); none: constant lr."""
    sched = torch.optim.lr_scheduler
    if cfg.schedule == "onecycle":
        return sched.OneCycleLR(
            # a quarter of the steps warm up, and at least two: torch divides by the length of
            # the warm-up less one step, so a run of 4 steps crashed (ZeroDivisionError) at 0.25
            optimizer, max_lr=cfg.lr, total_steps=total_steps, pct_start=max(0.25, 2 / total_steps) if total_steps >= 4 else 0.25,
            cycle_momentum=False,  # momentum stays as configured: one less thing to explain
        )
    if cfg.schedule == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=total_steps)
    if cfg.schedule == "step":
        return sched.MultiStepLR(optimizer, milestones=[total_steps // 2, total_steps * 3 // 4], gamma=0.1)
    return sched.ConstantLR(optimizer, factor=1.0, total_iters=0)
