"""Everything the training loop uses, prepared before it starts (and restored on a resume).

The loop in fit.py only calls these parts; what varies between trainings is decided here once:
- the step: the task's loss, or one of its variants (adversarial batches, group losses);
- the batch transform: group ids, augmentation that moves targets with pixels, the DDP slice;
- the optimizer: plain, or wrapped by DP-SGD (per-sample clipping and noise);
- the state: every object whose state a checkpoint must hold for a bitwise-exact resume.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from cnnlab.data import Dataset, Split, augment, num_batches, parse_augment
from cnnlab.data.targets import Targets, mirror_order
from cnnlab.errors import CnnlabError
from cnnlab.tasks import Task, get_task
from cnnlab.training import distributed
from cnnlab.training.adversarial import adversarial_batch
from cnnlab.training.checkpoint import optimizer_problem, position_problem, schedule_problem
from cnnlab.training.mitigate import make_group_loss
from cnnlab.training.optim import make_optimizer, make_schedule

if TYPE_CHECKING:
    from cnnlab.run import Run

Target = Tensor | Targets
Step = Callable[[Tensor, Target, "Tensor | None"], "tuple[Tensor, Tensor]"]  # (x, y, groups) -> (loss, outputs)
Transform = Callable[[Tensor, Target], "tuple[Tensor, Target, Tensor | None]"]  # -> this rank's (x, y, groups)
BatchLoss = Callable[[Tensor, Tensor, Tensor], Tensor]  # (x, outputs, y) -> mean loss, in place of the task's (distillation)


@dataclass
class Position:
    """Where the loop is, and what it has summed so far in the current epoch."""

    epoch: int = 0  # epochs fully done
    batch: int = 0  # batches done in the current epoch
    step: int = 0  # optimizer steps since the start
    loss_sum: float = 0.0
    sums: list[float] = field(default_factory=list)  # the task's train_sums, added over the epoch
    seen: int = 0
    train_seconds: float = 0.0  # time spent in training steps of the current epoch
    best_score: float = float("-inf")  # the task's score of the best epoch so far
    best_epoch: int = 0


@dataclass
class Parts:
    task: Task
    dist: distributed.Context  # this process's place among the ranks (one rank: the identity)
    device: torch.device
    model: nn.Module  # the weights: what is saved
    train: Split
    val: Split
    test: Split
    steps_per_epoch: int
    drop_last: bool
    step: Step
    transform: Transform
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    stateful: dict[str, Any]  # name -> object with state_dict/load_state_dict, saved in checkpoints
    private: Any = None  # the DP-SGD wrapper (cnnlab.training.private), when --dp


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CnnlabError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu or auto.")
    return torch.device(name)


def prepare(run: Run, data: Dataset, state: dict[str, Any] | None,
            batch_loss: BatchLoss | None = None) -> tuple[Parts, Position]:
    """Build every part for `run.config` on `data`; restore them and the position from `state`.
    `batch_loss` replaces the task's loss in the steps (a distillation's loss reads the batch)."""
    cfg = run.config
    device = resolve_device(cfg.device)
    if cfg.channels_last and data.train.x.ndim != 4:
        raise CnnlabError(f"--channels-last lays out images (N, C, H, W), and {data.name} holds clips "
                          f"(N, {', '.join(map(str, data.input_shape))}); drop --channels-last.")
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format  # --channels-last
    model = run.model.to(device, memory_format=fmt)
    dist = distributed.context()  # one process, or one rank of several (cnnlab.training.distributed)
    train, val, test = (split.to(device) for split in (data.train, data.val, data.test))  # pinned copies on CUDA
    task = get_task(run.task.name, data.classes, cfg.label_smoothing).bind(model)

    # BatchNorm cannot normalise a batch of one: no rank may get a slice of fewer than 2 images
    drop_last = 0 < len(train) % cfg.batch_size < 2 * dist.world_size
    steps_per_epoch = num_batches(len(train), cfg.batch_size, drop_last)
    if steps_per_epoch == 0:
        raise CnnlabError(f"{data.name} has {len(train)} training images, too few for one batch.")
    own = task.own_training(model, cfg, device)  # a GAN: the discriminator's update inside each step
    optimizer = make_optimizer(own.trained, cfg, own.adam_betas) if own else make_optimizer(model, cfg)
    schedule = make_schedule(optimizer, cfg, total_steps=cfg.epochs * steps_per_epoch)
    group_loss = make_group_loss(cfg.mitigate, data.name, train.x, train.y, task.per_example_loss)  # --mitigate
    private = None
    if cfg.dp:  # DP-SGD: per-sample clipping + noise; the accountant counts epsilon
        from cnnlab.training.private import PrivateTraining

        private = PrivateTraining(model, optimizer, len(train), cfg.batch_size, cfg.epochs * steps_per_epoch,
                                  cfg.target_epsilon, cfg.delta, cfg.max_grad_norm)
        optimizer = private.optimizer
    augment_rng = torch.Generator().manual_seed(cfg.seed + 1)
    ops = parse_augment(cfg.augment)
    mirror = torch.tensor(mirror_order(task.classes))  # a flipped "left" clip is a "right" one; most classes stay
    if cfg.adversarial != "none" and task.name != "classify":
        raise CnnlabError(f"adversarial training attacks class scores; this run learns the {task.name} task.")

    def transform(x: Tensor, y: Target) -> tuple[Tensor, Target, Tensor | None]:
        groups = group_loss.groups(x, y) if group_loss is not None else None  # before augmentation
        if ops:
            x, y = augment(x, y, ops, augment_rng, mirror)
        return dist.shard(x, y, groups)  # type: ignore[return-value]  # this rank's slice of the global batch

    net = dist.wrap(model)  # what steps call: DDP averages the gradients of all ranks
    autocast = torch.autocast("cuda", torch.bfloat16) if device.type == "cuda" else nullcontext()  # bf16 on GPUs

    def step(x: Tensor, y: Target, groups: Tensor | None) -> tuple[Tensor, Tensor]:
        if cfg.adversarial != "none":
            # Madry et al. 2018 / Wong et al. 2020: train on the batch's adversarial version,
            # attacked with the model in train mode (no eval switch), as their code does.
            x = adversarial_batch(model, x, y, cfg.adversarial, cfg.eps, cfg.adv_steps)  # type: ignore[arg-type]
        with autocast:
            outputs = net(x.contiguous(memory_format=fmt))
            if batch_loss is not None:
                loss = batch_loss(x, outputs, y)  # type: ignore[arg-type]
            else:
                loss = task.loss(outputs, y) if group_loss is None else group_loss(outputs, y, groups)  # type: ignore[arg-type]
        return loss, outputs

    stateful = {"optimizer": optimizer, "schedule": schedule, "augment_rng": _GeneratorState(augment_rng),
                "group_loss": group_loss, "privacy": private, **({"own_training": own} if own else {})}
    parts = Parts(task, dist, device, model, train, val, test, steps_per_epoch, drop_last,
                  own.step if own else step, transform, optimizer, schedule, stateful, private)
    pos = Position(sums=[0.0] * task.sum_count)
    if state is not None:
        pos = restore(parts, state)
    return parts, pos


class _GeneratorState:
    """A torch.Generator seen as an object with state_dict/load_state_dict."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def state_dict(self) -> Tensor:
        return self.generator.get_state()

    def load_state_dict(self, state: Tensor) -> None:
        self.generator.set_state(state)


def checkpoint_state(parts: Parts, pos: Position, metrics_bytes: int) -> dict[str, Any]:
    """Everything the next step depends on, as plain tensors, numbers and dicts (no pickled objects)."""
    return {
        "position": asdict(pos),
        "model": parts.model.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "metrics_bytes": metrics_bytes,
        **{name: obj.state_dict() if obj is not None else None for name, obj in parts.stateful.items()},
    }


def restore(parts: Parts, state: dict[str, Any]) -> Position:
    """Load a checkpoint into the parts; return its position (rank 0's, the same on every rank).
    `load_state` checked the checkpoint against the run; what only the built parts know (the
    steps of an epoch, the optimizer's and the schedule's own states) is checked here."""
    pos = Position(**state["position"])
    # the optimizer and schedule as config.toml makes them, before the checkpoint's are loaded
    optimizer, schedule = parts.optimizer.state_dict(), parts.schedule.state_dict()
    problem = position_problem(parts, pos)
    if problem is None:
        parts.model.load_state_dict(state["model"])
        torch.set_rng_state(state["torch_rng"])
        for name, obj in parts.stateful.items():
            if obj is None:
                continue
            try:
                obj.load_state_dict(state.get(name))
            except (AttributeError, IndexError, KeyError, RuntimeError, TypeError, ValueError) as e:
                problem = f"its {name} state does not fit this run ({type(e).__name__})"
                break
    problem = (problem or optimizer_problem(optimizer, state["optimizer"], parts.optimizer)
               or schedule_problem(schedule, state["schedule"], pos))
    if problem:
        raise CnnlabError(f"checkpoint.pt cannot continue this run: {problem}; start it again with --overwrite.")
    return pos
