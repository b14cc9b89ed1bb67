"""The training loop: one function, read top to bottom.

Each step: take a batch, augment it, forward, loss, backward, optimizer and schedule step.
Each epoch end: validate, log a line to metrics.jsonl, save the weights and a checkpoint.
A checkpoint holds everything the next step depends on (weights, optimizer, schedule, RNG
states, position in the epoch), and the batch order of an epoch is a pure function of
(seed, epoch), so a resumed run repeats exactly what the interrupted one would have done.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from cnnlab.training.adversarial import adversarial_batch
from cnnlab import energy
from cnnlab.training.mitigate import make_group_loss
from cnnlab.data import Dataset, augment, batches, epoch_order, num_batches, parse_augment
from cnnlab.errors import CnnlabError
from cnnlab.tasks.classify import loss_and_accuracy
from cnnlab.provenance import now
from cnnlab.run import BEST, CHECKPOINT, METRICS, WEIGHTS, Run
from cnnlab.files import save_weights
from cnnlab.training import distributed
from cnnlab.training.checkpoint import save_state
from cnnlab.training.optim import make_optimizer, make_schedule
from cnnlab.training.progress import TrainingProgress


class TrainingInterrupted(CnnlabError):
    exit_code = 130  # the shell's convention for "stopped by Ctrl-C"


@dataclass
class Position:
    """Where the loop is, and what it has summed so far in the current epoch."""

    epoch: int = 0  # epochs fully done
    batch: int = 0  # batches done in the current epoch
    step: int = 0  # optimizer steps since the start
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    train_seconds: float = 0.0  # time spent in training steps of the current epoch
    best_val_acc: float = -1.0
    best_epoch: int = 0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CnnlabError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu or auto.")
    return torch.device(name)


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


def fit(run: Run, data: Dataset, state: dict[str, Any] | None = None, quiet: bool = False) -> None:
    """Train `run.model` on `data` as `run.config` says, from scratch or from `state`."""
    cfg = run.config
    device = resolve_device(cfg.device)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format  # --channels-last
    model = run.model.to(device, memory_format=fmt)
    dist = distributed.context()  # one process, or one rank of several (cnnlab.training.distributed)
    net = dist.wrap(model)  # what training steps call: DDP averages the gradients of all ranks
    train, val, test = (split.to(device) for split in (data.train, data.val, data.test))  # pinned copies on CUDA
    autocast = torch.autocast("cuda", torch.bfloat16) if device.type == "cuda" else nullcontext()  # bf16 on GPUs

    # BatchNorm cannot normalise a batch of one: no rank may get a slice of fewer than 2 images
    drop_last = 0 < len(train) % cfg.batch_size < 2 * dist.world_size
    steps_per_epoch = num_batches(len(train), cfg.batch_size, drop_last)
    if steps_per_epoch == 0:
        raise CnnlabError(f"{data.name} has {len(train)} training images, too few for one batch.")
    optimizer = make_optimizer(model, cfg)
    schedule = make_schedule(optimizer, cfg, total_steps=cfg.epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    augmentations = parse_augment(cfg.augment)
    augment_rng = torch.Generator().manual_seed(cfg.seed + 1)
    group_loss = make_group_loss(cfg.mitigate, data.name, train.x, train.y, cfg.label_smoothing)  # --mitigate
    private = None
    if cfg.dp:  # DP-SGD: per-sample clipping + noise; the accountant counts epsilon (cnnlab.training.private)
        from cnnlab.training.private import PrivateTraining

        private = PrivateTraining(model, optimizer, len(train), cfg.batch_size, cfg.epochs * steps_per_epoch,
                                  cfg.target_epsilon, cfg.delta, cfg.max_grad_norm)
        optimizer = private.optimizer

    pos = Position()
    if state is not None:
        pos = Position(**state["position"])  # rank 0's, the same on every rank
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["torch_rng"])
        augment_rng.set_state(state["augment_rng"])
        if group_loss is not None:
            group_loss.load_state_dict(state["group_loss"])
        if private is not None:
            private.load_state_dict(state["privacy"])
        if dist.is_main:
            with open(run.path / METRICS, "a") as f:  # forget lines logged after the checkpoint
                f.truncate(state["metrics_bytes"])

    def checkpoint() -> None:
        _check_finite_weights(run, model, pos, steps_per_epoch)
        if not dist.is_main:
            return
        metrics = run.path / METRICS
        save_state(
            {
                "position": asdict(pos),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "augment_rng": augment_rng.get_state(),
                "metrics_bytes": metrics.stat().st_size if metrics.exists() else 0,
                "group_loss": group_loss.state_dict() if group_loss is not None else None,
                "privacy": private.state_dict() if private is not None else None,
            },
            run.path / CHECKPOINT,
        )

    bar = TrainingProgress(cfg.epochs * steps_per_epoch, pos.step, quiet or not dist.is_main)
    watts = energy.track(run.path, "training") if dist.is_main else nullcontext()
    with bar, stop_requests() as stop, watts:
        while pos.epoch < cfg.epochs:
            epoch_label = f"epoch {pos.epoch + 1}/{cfg.epochs}"
            epoch_start = time.perf_counter()
            loss_sum = torch.tensor(pos.loss_sum, dtype=torch.float64, device=device)
            correct = torch.tensor(pos.correct, device=device)
            model.train()
            order = epoch_order(len(train), cfg.seed, pos.epoch).to(device)
            step_lrs: list[float] = []  # the step size of each step of this epoch, kept for TracIn
            tick = time.perf_counter()
            for x, y in batches(train.x, train.y, cfg.batch_size, order, pos.batch, drop_last):
                groups = group_loss.groups(x, y) if group_loss is not None else None  # before augmentation
                if augmentations:
                    x = augment(x, augmentations, augment_rng)
                x, y, groups = dist.shard(x, y, groups)  # this rank's slice of the global batch
                if cfg.adversarial != "none":
                    # Madry et al. 2018 / Wong et al. 2020: train on the batch's adversarial
                    # version, attacked with the model in train mode (no eval switch), as their code does.
                    x = adversarial_batch(model, x, y, cfg.adversarial, cfg.eps, cfg.adv_steps)
                with autocast:
                    logits = net(x.contiguous(memory_format=fmt))
                    loss = loss_fn(logits, y) if group_loss is None else group_loss(logits, y, groups)
                if not torch.isfinite(loss):
                    _stop_on_nonfinite(run, pos, f"the loss became {loss.item()} at", pos.batch + 1, steps_per_epoch)
                step_lrs.append(optimizer.param_groups[0]["lr"])
                optimizer.zero_grad(set_to_none=True)
                dist.global_mean(loss, len(y)).backward()
                optimizer.step()
                schedule.step()

                batch_loss, batch_correct = dist.sum(loss.detach() * len(y), (logits.argmax(1) == y).sum())
                loss_sum += batch_loss
                correct += batch_correct
                pos.seen += dist.global_batch
                pos.batch += 1
                pos.step += 1
                show = pos.batch % 20 == 0  # reading the sums syncs a GPU; do it now and then
                if show:
                    speed = pos.seen / (pos.train_seconds + time.perf_counter() - tick)
                    bar.step(1, epoch_label, _stats(loss_sum, correct, pos.seen, speed))
                else:
                    bar.step(1, epoch_label)
                if dist.agree(stop) or (cfg.checkpoint_every and pos.step % cfg.checkpoint_every == 0):
                    pos.loss_sum, pos.correct = loss_sum.item(), int(correct)
                    pos.train_seconds += time.perf_counter() - tick
                    tick = time.perf_counter()
                    checkpoint()
                    if stop.is_set():
                        raise TrainingInterrupted(
                            f"interrupted at {epoch_label}, batch {pos.batch}/{steps_per_epoch}; the checkpoint "
                            f"is saved: resume with `cnnlab train --resume {run.path}`."
                        )
            pos.train_seconds += time.perf_counter() - tick
            _check_finite_weights(run, model, pos, steps_per_epoch)  # before any file is replaced

            record: dict[str, Any] = {
                "event": "epoch",
                "epoch": pos.epoch + 1,
                "step": pos.step,
                "lr": optimizer.param_groups[0]["lr"],
                "train_loss": loss_sum.item() / pos.seen,
                "train_acc": int(correct) / pos.seen,
                "images_per_s": pos.seen / max(pos.train_seconds, 1e-9),
                "train_seconds": pos.train_seconds,  # in training steps only: no validation or saving
            }
            if len(val):
                record["val_loss"], record["val_acc"] = loss_and_accuracy(model, val.x, val.y, tta=cfg.tta)
            if private is not None:
                record["epsilon"] = private.epsilon()
            record["epoch_seconds"] = time.perf_counter() - epoch_start
            if dist.is_main:
                run.log(record)
            bar.epoch_line(record)

            score = record.get("val_acc", record["train_acc"])
            pos = Position(epoch=pos.epoch + 1, step=pos.step, best_val_acc=pos.best_val_acc, best_epoch=pos.best_epoch)
            if dist.is_main:
                save_weights(model, run.path / WEIGHTS, run.weights_metadata())
            if cfg.keep_checkpoints and dist.is_main:
                _keep_epoch_weights(run, model, pos.epoch, step_lrs)
            if score > pos.best_val_acc:
                pos.best_val_acc, pos.best_epoch = score, pos.epoch
                if dist.is_main:
                    save_weights(model, run.path / BEST, run.weights_metadata())
            checkpoint()
            if dist.agree(stop):
                raise TrainingInterrupted(
                    f"interrupted after epoch {pos.epoch}/{cfg.epochs}; the checkpoint is saved: "
                    f"resume with `cnnlab train --resume {run.path}`."
                )

    if not dist.is_main:  # rank 0 alone evaluates on the test split and writes the results
        model.eval()
        return
    with energy.track(run.path, "evaluation"):
        test_loss, test_acc = loss_and_accuracy(model, test.x, test.y, tta=cfg.tta) if len(test) else (float("nan"), float("nan"))
    run.log({"event": "test", "test_loss": test_loss, "test_acc": test_acc, "best_epoch": pos.best_epoch})
    if private is not None:
        run.provenance["privacy"] = private.record()
        private.close()
    run.record_weights()
    run.provenance["finished"] = now()
    run.save_provenance()
    model.eval()


def _stats(loss_sum: torch.Tensor, correct: torch.Tensor, seen: int, images_per_s: float) -> str:
    return f"loss {loss_sum.item() / seen:.4f} acc {int(correct) / seen:.4f} {images_per_s:,.0f} img/s"


def _check_finite_weights(run: Run, model: nn.Module, pos: Position, steps_per_epoch: int) -> None:
    """A step can turn the weights to inf while its loss was still finite: never save those."""
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        _stop_on_nonfinite(run, pos, "the weights became inf or NaN after", pos.batch, steps_per_epoch)


def _stop_on_nonfinite(run: Run, pos: Position, what: str, batch: int, steps_per_epoch: int) -> None:
    kept = (
        f"the last good checkpoint is kept in {run.path}"
        if (run.path / CHECKPOINT).exists()
        else "no checkpoint had been written yet"
    )
    where = f"epoch {pos.epoch + 1}, batch {batch}/{steps_per_epoch}"
    if distributed.context().is_main:
        run.log({"event": "stopped", "reason": f"{what} {where}", "epoch": pos.epoch + 1, "step": pos.step})
    raise CnnlabError(
        f"{what} {where}: training "
        f"stopped and {kept}; try a lower --lr (this run used {run.config.lr})."
    )


def _keep_epoch_weights(run: Run, model: nn.Module, epoch: int, step_lrs: list[float]) -> None:
    """checkpoints/epoch-NNN.safetensors: this epoch's weights and the mean step size that led
    to them; TracIn (Pruthi et al. 2020, eq. 3) sums gradient dot products over these, each
    weighted by its learning rate. After a mid-epoch resume the mean covers the resumed steps."""
    folder = run.path / "checkpoints"
    folder.mkdir(exist_ok=True)
    lr = sum(step_lrs) / len(step_lrs) if step_lrs else run.config.lr
    save_weights(model, folder / f"epoch-{epoch:03d}.safetensors", {**run.weights_metadata(), "epoch": epoch, "lr": lr})
