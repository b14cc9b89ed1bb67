"""Recipes: a named set of training choices, and a time budget that picks the number of epochs.

`--recipe fast` is cnnlab's time-to-accuracy recipe. What it takes from the speed runs
(Page 2018; Jordan 2024, airbench) and what it leaves, measured on Fashion-MNIST on a 2-core
CPU (the table in docs/results.md, "Speed and scale"):

- kept: data as in-memory tensors, batch-level flips, a small BatchNorm CNN (`fastnet`, logits
  scaled by 1/8), label smoothing 0.1, a one-cycle schedule with Nesterov SGD at peak lr 0.4,
  flip test-time augmentation, channels_last memory (oneDNN's fast convolution layout: ~30%
  faster here), all 60,000 images for training (no validation split: the schedule is fixed,
  nothing is selected on it);
- left: `torch.compile` (on this CPU its warm-up costs ~45 s and the compiled step was slower),
  weight averaging (EMA: no gain in 4 epochs), random crops and shifted TTA views (no gain at
  this length), progressive resizing and a space-to-depth stem (faster epochs, lower accuracy).

On CUDA the recipe switches to `fastnet-wide` (airbench's widths), batches of 1024, crops and
flips, label smoothing 0.2, bf16 autocast; the schedule is fixed to 10 epochs there (no budget).

A recipe fills in only the options you did not set: `--recipe fast --epochs 3` trains 3 epochs.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.config import RECIPES, TrainConfig
from cnnlab.errors import CnnlabError

if TYPE_CHECKING:
    from cnnlab.tasks.base import Task

Loss = Callable[[torch.Tensor, Any], torch.Tensor]

# Seconds kept back from a budget for what follows training besides the test pass (which is
# estimated from the step time): writing the run, CodeCarbon's stop, the interpreter's exit.
RESERVE_SECONDS = 2.0
SAFETY = 0.95  # plan for 95% of the measured speed: the first steps are the fastest


def recipe_choices(name: str, cuda: bool) -> dict[str, Any]:
    """The TrainConfig values recipe `name` chooses, on a CUDA GPU or on the CPU."""
    if name not in RECIPES:
        raise CnnlabError(f"unknown recipe '{name}'; choose from {', '.join(RECIPES)}.")
    if name == "none":
        return {}
    common = dict(optimizer="sgd", momentum=0.9, weight_decay=5e-4, schedule="onecycle", label_smoothing=0.1,
                  val_fraction=0.0, tta=True, channels_last=True)
    if cuda:
        return {**common, "model": "fastnet-wide", "device": "cuda", "batch_size": 1024, "lr": 0.4,
                "epochs": 10, "augment": "crop,flip", "label_smoothing": 0.2}
    return {**common, "model": "fastnet", "batch_size": 256, "lr": 0.4, "budget": 120.0, "augment": "flip"}


def apply_recipe(cfg: TrainConfig, given: set[str]) -> TrainConfig:
    """`cfg` with the recipe's choices for every option not in `given` (the ones the user set)."""
    if "device" in given:
        cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    else:
        cuda = torch.cuda.is_available()
    chosen = recipe_choices(cfg.recipe, cuda)
    if "epochs" in given:  # a fixed number of epochs: no budget to plan with
        chosen.pop("budget", None)
    return replace(cfg, **{k: v for k, v in chosen.items() if k not in given})


def recipe_batch_size(cfg: TrainConfig, n_train: int, given: set[str]) -> TrainConfig:
    """A recipe's batch, halved until an epoch has at least 20 steps, and its peak lr with it
    (the linear scaling rule, Goyal et al. 2017): a high peak lr needs steps of warm-up (on the
    1,438 digits, batches of 256 leave 6 steps an epoch)."""
    if cfg.recipe == "none" or "batch_size" in given:
        return cfg
    batch = cfg.batch_size
    while batch > 16 and n_train / batch < 20:
        batch //= 2
    lr = cfg.lr if "lr" in given else cfg.lr * batch / cfg.batch_size
    return replace(cfg, batch_size=batch, lr=lr)


def given_options(config: TrainConfig | None, overrides: dict[str, Any]) -> set[str]:
    """The options a user set: keyword overrides, and the fields of a config that differ from the defaults."""
    default = TrainConfig()
    from_config = {f.name for f in fields(TrainConfig) if config is not None and getattr(config, f.name) != getattr(default, f.name)}
    return set(overrides) | from_config


def process_start() -> float:
    """time.time() when this process started: a budget counts the whole command, imports included."""
    try:
        import psutil

        return psutil.Process(os.getpid()).create_time()
    except Exception:  # no psutil, or /proc unreadable: count from now
        return time.time()


def plan_epochs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, spent: float,
                n_test: int = 0, loss: Loss = F.cross_entropy, task: Task | None = None) -> tuple[int, dict[str, float]]:
    """How many epochs of `cfg` fit in what is left of `cfg.budget` after `spent` seconds.

    Times real training steps of a copy of `model` on the first batch of the training
    images (the model, its optimizer and the random streams of the run are untouched), then
    divides what is left, less the final test pass on `n_test` images and a small reserve, by
    the time of one epoch. `loss(outputs, y)`: classification's unless a bound `task` is given,
    whose loss it is, or whose own step is timed if it trains its own way (a GAN).
    Returns (epochs, the measurements) - the measurements go into provenance.json.
    """
    from cnnlab.bench import make_step, time_steps
    from cnnlab.training.parts import resolve_device

    device = resolve_device(cfg.device)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    probe = copy.deepcopy(model).to(device).to(memory_format=fmt)
    xb = x[: cfg.batch_size].to(device).contiguous(memory_format=fmt)
    yb = y[: cfg.batch_size].to(device)
    own = task.own_training(probe, cfg, device) if task is not None else None
    loss = task.loss if task is not None else loss
    times = time_steps(make_step(probe, xb, yb, cfg.momentum, loss, own), steps=5, warmup=3, device=device)
    step = sorted(times)[len(times) // 2] / SAFETY  # median
    steps_per_epoch = math.ceil(len(y) / cfg.batch_size)
    epoch_seconds = step * steps_per_epoch
    # the test pass: a forward is ~1/3 of a training step, twice with flip TTA
    test_seconds = step / 3 * (2 if cfg.tta else 1) * math.ceil(n_test / cfg.batch_size)
    left = cfg.budget - spent - test_seconds - RESERVE_SECONDS
    epochs = max(1, int(left // epoch_seconds))
    return epochs, {"budget_s": cfg.budget, "spent_before_training_s": round(spent, 2),
                    "step_s": round(step, 4), "epoch_s": round(epoch_seconds, 2),
                    "test_s": round(test_seconds, 2), "epochs": epochs}
