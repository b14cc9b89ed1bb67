"""What a task is: the one interface between the shared spine and what is being learned.

The training loop, resume, DDP, runs and reports are the same for every task; a `Task` says
what differs: what a target is, the loss, the numbers that score a prediction (summed over
batches), how raw outputs decode into predictions, and its pictures. A dataset names its task
(`Dataset.task`) and a model the tasks it can serve (`@register_model(tasks=...)`).

Adding a task is one module in `cnnlab/tasks/` with a subclass registered by `@register_task`,
plus the datasets that produce its targets and the models that serve it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from cnnlab.data.targets import Targets
from cnnlab.errors import CnnlabError, unknown_name
from cnnlab.models import eval_mode

if TYPE_CHECKING:
    from cnnlab.config import TrainConfig
    from cnnlab.data import Dataset, Split

Target = Tensor | Targets


class Task:
    """One task. Subclasses set the class attributes and implement the methods that raise."""

    name: ClassVar[str]
    target: ClassVar[str]  # what one image's target is, in words (`cnnlab datasets`)
    score: ClassVar[str]  # the metric (higher is better) that picks the best epoch, e.g. "acc"
    train_metrics: ClassVar[tuple[str, ...]]  # the numbers shown while training, from `train_sums`
    train_sum_count: ClassVar[int | None] = None  # how many sums `train_sums` returns; None: one per train metric
    serves_any_images: ClassVar[bool] = False  # True: learns from the images alone, so every dataset serves it

    def __init__(self, classes: list[str], label_smoothing: float = 0.0) -> None:
        self.classes = list(classes)
        self.label_smoothing = label_smoothing  # training loss only (Szegedy et al. 2016); scores use the plain loss

    def bind(self, model: nn.Module) -> Task:
        """Meet the model before use. Most tasks need nothing from it; a detector's loss and
        decoding depend on its grid or anchors, so a detection task keeps the model's head."""
        return self

    # -- learning ---------------------------------------------------------------------------
    def own_training(self, model: nn.Module, cfg: TrainConfig, device: torch.device) -> OwnTraining | None:
        """None: the loop steps the whole model by the task's loss. A task that trains a second
        net in turn (a GAN's discriminator) returns its `OwnTraining`, which the loop uses instead."""
        return None

    def end_of_epoch(self, model: nn.Module, epoch: int, run: Path, weights: Path) -> None:
        """What the task keeps of each epoch beside its weights (saved in `weights`), in the run
        folder `run`: most tasks nothing; a generator, the images of fixed latent vectors."""

    def loss(self, outputs: Tensor, y: Target) -> Tensor:
        """Mean loss over the batch, differentiable."""
        raise NotImplementedError

    def per_example_loss(self, outputs: Tensor, y: Target) -> Tensor:
        """(N,) loss of each image: what group reweighting and GroupDRO average differently."""
        raise CnnlabError(f"the {self.name} task has no per-image loss, so --mitigate cannot reweight it.")

    def train_sums(self, outputs: Tensor, y: Target) -> Tensor:
        """1-D float64 sums over the batch, cheap enough for every step (no sync with a GPU);
        the loop adds them over the epoch and over DDP ranks, and `train_summary` turns them
        into the numbers named `train_metrics`."""
        raise NotImplementedError

    @property
    def sum_count(self) -> int:
        return len(self.train_metrics) if self.train_sum_count is None else self.train_sum_count

    def train_summary(self, sums: list[float], seen: int) -> dict[str, float]:
        """{name: value} of `train_metrics` from the epoch's sums over `seen` images."""
        return {name: s / seen for name, s in zip(self.train_metrics, sums)}

    # -- scoring ----------------------------------------------------------------------------
    def outputs(self, model: nn.Module, x: Tensor, batch_size: int = 512, tta: bool = False) -> Tensor:
        """Raw outputs on x in eval mode, batch by batch on the model's device, returned on the CPU.
        `tta`: flip test-time augmentation (the mean of the outputs of each image and of its
        mirror, mirrored back), as the speed-run recipes score (airbench)."""
        device = next(model.parameters()).device

        def forward(batch: Tensor) -> Tensor:
            batch = batch.to(device)
            return (model(batch) + self.unflip(model(batch.flip(-1)))) / 2 if tta else model(batch)

        with torch.inference_mode(), eval_mode(model):
            out = [forward(x[i : i + batch_size]).float().cpu() for i in range(0, len(x), batch_size)]
        return torch.cat(out) if out else torch.empty(0)

    def unflip(self, outputs: Tensor) -> Tensor:
        """Outputs of a mirrored image brought back to the original's frame (for `tta`)."""
        return outputs  # one output per image (class logits) does not move

    def metrics(self, outputs: Tensor, y: Target) -> dict[str, float]:
        """Every number this task reports, `loss` included, over a whole split."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, split: Split, tta: bool = False) -> dict[str, float]:
        """The task's metrics of `model` on a split (empty: NaN for each, as nothing was measured)."""
        if len(split) == 0:
            return {"loss": float("nan"), self.score: float("nan")}
        return self.metrics(self.outputs(model, split.x, tta=tta), split.y)

    def decode(self, outputs: Tensor) -> Any:
        """Raw outputs -> predictions in the task's own terms (classes, boxes, masks...)."""
        raise NotImplementedError

    # -- checks and pictures ----------------------------------------------------------------
    def check_model(self, model: nn.Module, data: Dataset) -> None:
        """One sentence when `model`'s outputs on two training images do not fit this task."""
        with torch.no_grad(), eval_mode(model):
            self.check_outputs(model(data.train.x[:2].to(next(model.parameters()).device)), data)

    def check_outputs(self, outputs: Tensor, data: Dataset) -> None:
        """One sentence when a model's raw outputs (for 2 images) do not fit this task on `data`."""
        raise NotImplementedError

    def pictures(self, outputs: Tensor, split: Split, out: Path) -> dict[str, Path]:
        """The task's pictures of predictions on `split`, saved under `out` (PNG)."""
        raise NotImplementedError

    def predictions(self, outputs: Tensor, size: tuple[int, int], images: list[Tensor], names: list[str],
                    out: Path) -> list[dict[str, Any]]:
        """What `cnnlab predict` tells of each image file: its predictions in plain terms (JSON:
        numbers, lists, names) in the pixels of `images` (the files as they are, each (3, H, W) in
        [0, 1]), and its pictures saved under `out` as NAME-*.png. `outputs` are the model's raw
        outputs on the images resized to its input `size` (H, W)."""
        raise NotImplementedError


class OwnTraining(Protocol):
    """A task's own training step, and the state a checkpoint must keep of it."""

    trained: nn.Module  # whose parameters the run's optimizer steps with the loss `step` returns
    adam_betas: tuple[float, float]  # of the run's optimizer, when it is Adam or AdamW

    def step(self, x: Tensor, y: Target, groups: Tensor | None) -> tuple[Tensor, Tensor]: ...  # -> (loss, outputs)

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


_TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    _TASKS[cls.name] = cls
    return cls


def _load_tasks() -> None:
    from cnnlab.tasks import classify, detect, generate, pose, segment, video  # noqa: F401  (each registers its Task)


def task_names() -> list[str]:
    _load_tasks()
    return list(_TASKS)


def get_task(name: str, classes: list[str], label_smoothing: float = 0.0) -> Task:
    _load_tasks()
    if name not in _TASKS:
        raise unknown_name("task", name, list(_TASKS))
    return _TASKS[name](classes, label_smoothing)


def task_for(model_name: str, model_tasks: tuple[str, ...], data: Dataset) -> str:
    """The task a model learns on a dataset: the first of the model's tasks the dataset's
    targets serve. A model that serves none of them is one sentence naming both."""
    _load_tasks()
    for task in model_tasks:
        if task in data.tasks or (task in _TASKS and _TASKS[task].serves_any_images):
            return task
    raise CnnlabError(
        f"model {model_name} serves {' and '.join(model_tasks)} but dataset {data.name} is for "
        f"{' and '.join(data.tasks)}; choose a {data.task} model (`cnnlab models`)."
    )

