"""What the training loop does beside stepping: log, checkpoint, keep the best, stop.

Each function is called by `fit` at one point of the loop and touches the run directory only
on rank 0 (the other DDP ranks train beside it and write nothing). Every file is replaced
atomically, and no weights are ever saved once they stop being finite.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from cnnlab import energy
from cnnlab.errors import CnnlabError
from cnnlab.files import finite, save_weights
from cnnlab.provenance import now
from cnnlab.run import BEST, CHECKPOINT, METRICS, WEIGHTS, Run
from cnnlab.training import distributed
from cnnlab.training.checkpoint import save_state
from cnnlab.training.parts import Parts, Position, checkpoint_state


class TrainingInterrupted(CnnlabError):
    exit_code = 130  # the shell's convention for "stopped by Ctrl-C"


@contextmanager
def stop_requests() -> Iterator[threading.Event]:
    """Turn Ctrl-C / SIGTERM into a request the loop honours at the next step boundary,
    so it can save a consistent checkpoint. A second Ctrl-C stops at once."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers can only be installed from the main thread
        return

    def handler(signum: int, frame: object) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def forget_later_lines(run: Run, state: dict[str, Any]) -> None:
    """On a resume: drop the metrics.jsonl lines logged after the checkpoint was taken."""
    if distributed.context().is_main:
        with open(run.path / METRICS, "a") as f:
            f.truncate(state["metrics_bytes"])


def checkpoint(run: Run, parts: Parts, pos: Position) -> None:
    """checkpoint.pt: the whole trainer state, for an exact resume."""
    check_finite_weights(run, parts, pos)
    if not distributed.context().is_main:
        return
    metrics = run.path / METRICS
    save_state(checkpoint_state(parts, pos, metrics.stat().st_size if metrics.exists() else 0), run.path / CHECKPOINT)


def interrupted(run: Run, where: str) -> TrainingInterrupted:
    return TrainingInterrupted(
        f"interrupted {where}; the checkpoint is saved: resume with `cnnlab train --resume {run.path}`."
    )


def progress_stats(parts: Parts, loss_sum: float, sums: list[float], seen: int, images_per_s: float) -> str:
    shown = parts.task.train_summary(sums, seen)
    return " ".join([f"loss {loss_sum / seen:.4f}", *(f"{k} {v:.4f}" for k, v in shown.items()), f"{images_per_s:,.0f} img/s"])


def end_epoch(run: Run, parts: Parts, pos: Position, epoch_start: float, step_lrs: list[float]) -> tuple[dict[str, Any], Position]:
    """Validate, log the epoch, save its weights (and the best so far); return the record and
    the position at the start of the next epoch."""
    main = distributed.context().is_main
    check_finite_weights(run, parts, pos)  # before any file is replaced
    record: dict[str, Any] = {
        "event": "epoch",
        "epoch": pos.epoch + 1,
        "step": pos.step,
        "lr": parts.optimizer.param_groups[0]["lr"],
        "train_loss": pos.loss_sum / pos.seen,
        **{f"train_{k}": v for k, v in parts.task.train_summary(pos.sums, pos.seen).items()},
        "images_per_s": pos.seen / max(pos.train_seconds, 1e-9),
        "train_seconds": pos.train_seconds,  # in training steps only: no validation or saving
    }
    if len(parts.val):
        scores = parts.task.evaluate(parts.model, parts.val, tta=run.config.tta)
        record.update({f"val_{k}": v for k, v in scores.items() if isinstance(v, float)})
    if parts.private is not None:
        record["epsilon"] = parts.private.epsilon()
    record["epoch_seconds"] = time.perf_counter() - epoch_start
    if main:
        run.log(record)

    # the best epoch by the task's score on validation; without a validation split, by the
    # first training metric (or the lowest training loss, for a task that sums none)
    metrics = parts.task.train_metrics
    score = record.get(f"val_{parts.task.score}", record[f"train_{metrics[0]}"] if metrics else -record["train_loss"])
    pos = Position(epoch=pos.epoch + 1, step=pos.step, sums=[0.0] * len(pos.sums),
                   best_score=pos.best_score, best_epoch=pos.best_epoch)
    if main:
        save_weights(parts.model, run.path / WEIGHTS, run.weights_metadata())
        parts.task.end_of_epoch(parts.model, pos.epoch, run.path, run.path / WEIGHTS)
        if run.config.keep_checkpoints:
            keep_epoch_weights(run, parts, pos.epoch, step_lrs)
    if score > pos.best_score:
        pos.best_score, pos.best_epoch = score, pos.epoch
        if main:
            save_weights(parts.model, run.path / BEST, run.weights_metadata())
    return record, pos


def finish(run: Run, parts: Parts, pos: Position) -> None:
    """Rank 0 alone scores the test split and completes the run's records; the other ranks
    wait for it, so no process tears the group down while another still uses it."""
    if parts.dist.is_main:
        with energy.track(run.path, "evaluation"):
            scores = parts.task.evaluate(parts.model, parts.test, tta=run.config.tta)
        per_class = {k: finite(v) for k, v in scores.items() if isinstance(v, dict)}  # a class absent from the split: null
        run.log({"event": "test", **{f"test_{k}": v for k, v in {**scores, **per_class}.items()}, "best_epoch": pos.best_epoch})
        if parts.private is not None:
            run.provenance["privacy"] = parts.private.record()
            parts.private.close()
        run.record_weights()
        run.provenance["finished"] = now()
        run.save_provenance()
    parts.dist.barrier()
    parts.model.eval()


def check_finite_loss(run: Run, parts: Parts, pos: Position, loss: torch.Tensor) -> None:
    if not torch.isfinite(loss):
        stop_on_nonfinite(run, parts, pos, f"the loss became {loss.item()} at", pos.batch + 1)


def check_finite_weights(run: Run, parts: Parts, pos: Position) -> None:
    """A step can turn the weights to inf while its loss was still finite: never save those."""
    if not all(torch.isfinite(p).all() for p in parts.model.parameters()):
        stop_on_nonfinite(run, parts, pos, "the weights became inf or NaN after", pos.batch)


def stop_on_nonfinite(run: Run, parts: Parts, pos: Position, what: str, batch: int) -> None:
    kept = (
        f"the last good checkpoint is kept in {run.path}"
        if (run.path / CHECKPOINT).exists()
        else "no checkpoint had been written yet"
    )
    where = f"epoch {pos.epoch + 1}, batch {batch}/{parts.steps_per_epoch}"
    if distributed.context().is_main:
        run.log({"event": "stopped", "reason": f"{what} {where}", "epoch": pos.epoch + 1, "step": pos.step})
    raise CnnlabError(f"{what} {where}: training stopped and {kept}; try a lower --lr (this run used {run.config.lr}).")


def keep_epoch_weights(run: Run, parts: Parts, epoch: int, step_lrs: list[float]) -> None:
    """checkpoints/epoch-NNN.safetensors: this epoch's weights and the mean step size that led
    to them; TracIn (Pruthi et al. 2020, eq. 3) sums gradient dot products over these, each
    weighted by its learning rate. After a mid-epoch resume the mean covers the resumed steps."""
    folder = run.path / "checkpoints"
    folder.mkdir(exist_ok=True)
    lr = sum(step_lrs) / len(step_lrs) if step_lrs else run.config.lr
    save_weights(parts.model, folder / f"epoch-{epoch:03d}.safetensors", {**run.weights_metadata(), "epoch": epoch, "lr": lr})
