"""The training loop: one function, read top to bottom.

Each step: take a batch, transform it (groups, augmentation, this rank's slice), the step
(forward and the task's loss), backward, optimizer and schedule step. Each epoch end: validate,
log a line to metrics.jsonl, save the weights and a checkpoint. Every part is prepared before
the loop starts (parts.py); what happens beside the steps is in callbacks.py.

A checkpoint holds everything the next step depends on (weights, optimizer, schedule, RNG
states, position in the epoch), and the batch order of an epoch is a pure function of
(seed, epoch), so a resumed run repeats exactly what the interrupted one would have done.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Any

import torch

from cnnlab import energy
from cnnlab.data import Dataset, batches, epoch_order
from cnnlab.run import Run
from cnnlab.training import callbacks
from cnnlab.training.callbacks import TrainingInterrupted, stop_requests
from cnnlab.training.parts import BatchLoss, prepare
from cnnlab.training.progress import TrainingProgress

__all__ = ["TrainingInterrupted", "fit"]


def fit(run: Run, data: Dataset, state: dict[str, Any] | None = None, quiet: bool = False,
        loss: BatchLoss | None = None) -> None:
    """Train `run.model` on `data` as `run.config` says, from scratch or from `state`; `loss`
    (x, outputs, y) -> mean loss replaces the task's (cnnlab.compress's distillation)."""
    cfg = run.config
    parts, pos = prepare(run, data, state, loss)
    dist = parts.dist
    if state is not None:
        callbacks.forget_later_lines(run, state)
    bar = TrainingProgress(cfg.epochs * parts.steps_per_epoch, pos.step, quiet or not dist.is_main)
    watts = energy.track(run.path, "training") if dist.is_main else nullcontext()
    with bar, stop_requests() as stop, watts:
        while pos.epoch < cfg.epochs:
            epoch_label, epoch_start = f"epoch {pos.epoch + 1}/{cfg.epochs}", time.perf_counter()
            # the epoch's sums stay on the device (reading them syncs a GPU): loss, then the task's
            sums = torch.tensor([pos.loss_sum, *pos.sums], dtype=torch.float64, device=parts.device)
            parts.model.train()
            order = epoch_order(len(parts.train), cfg.seed, pos.epoch).to(parts.device)
            step_lrs: list[float] = []  # the step size of each step of this epoch, kept for TracIn
            tick = time.perf_counter()
            for x, y in batches(parts.train.x, parts.train.y, cfg.batch_size, order, pos.batch, parts.drop_last):
                x, y, groups = parts.transform(x, y)
                loss, outputs = parts.step(x, y, groups)
                callbacks.check_finite_loss(run, parts, pos, loss)
                step_lrs.append(parts.optimizer.param_groups[0]["lr"])
                parts.optimizer.zero_grad(set_to_none=True)
                dist.global_mean(loss, len(y)).backward()
                parts.optimizer.step()
                parts.schedule.step()

                batch_sums = torch.cat([(loss.detach() * len(y)).double().view(1), parts.task.train_sums(outputs.detach(), y)])
                sums += dist.sum(batch_sums)[0]
                pos.seen, pos.batch, pos.step = pos.seen + dist.global_batch, pos.batch + 1, pos.step + 1
                if pos.batch % 20 == 0:  # reading the sums syncs a GPU; do it now and then
                    speed = pos.seen / (pos.train_seconds + time.perf_counter() - tick)
                    bar.step(1, epoch_label, callbacks.progress_stats(parts, sums[0].item(), sums[1:].tolist(), pos.seen, speed))
                else:
                    bar.step(1, epoch_label)
                if dist.agree(stop) or (cfg.checkpoint_every and pos.step % cfg.checkpoint_every == 0):
                    pos.loss_sum, pos.sums = sums[0].item(), sums[1:].tolist()
                    pos.train_seconds += time.perf_counter() - tick
                    tick = time.perf_counter()
                    callbacks.checkpoint(run, parts, pos)
                    if stop.is_set():
                        raise callbacks.interrupted(run, f"at {epoch_label}, batch {pos.batch}/{parts.steps_per_epoch}")
            pos.train_seconds += time.perf_counter() - tick
            pos.loss_sum, pos.sums = sums[0].item(), sums[1:].tolist()
            record, pos = callbacks.end_epoch(run, parts, pos, epoch_start, step_lrs)
            bar.epoch_line(record)
            callbacks.checkpoint(run, parts, pos)
            if dist.agree(stop):
                raise callbacks.interrupted(run, f"after epoch {pos.epoch}/{cfg.epochs}")
    callbacks.finish(run, parts, pos)
