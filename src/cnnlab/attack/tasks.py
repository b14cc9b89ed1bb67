"""PGD against a detector or a segmenter: its own loss climbed, its own score per eps.

    robust_scores(model, run.task, x, y, [0.01, 0.03]).points -> [TaskPoint(eps=0, score=.., loss=..), ...]

A classifier is attacked through the cross-entropy of the true label; a task with richer
targets is attacked the same way through its own training loss on the true targets (Xie et al.
2017, "Adversarial Examples for Semantic Segmentation and Object Detection", attack both by
climbing the loss of the right answer): for a detector, the loss that rewards finding the true
boxes (YOLO's grid loss, SSD's matched default boxes), so climbing it makes the detector miss
them or invent others; for a segmenter, the per-pixel cross-entropy. The attack is `perturb.pgd`
(L-inf, projected onto the eps-ball and [0, 1]) with `loss=task.loss`, and the score is the
task's: mAP@0.5 for detection, mIoU for segmentation. eps = 0 is measured first, the clean score.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from cnnlab.data.targets import Targets
from cnnlab.errors import CnnlabError
from cnnlab.models import eval_mode
from cnnlab.perturb.checks import check_eps, check_images
from cnnlab.perturb.pgd import pgd
from cnnlab.tasks import Task


@dataclass
class TaskPoint:
    eps: float
    score: float  # the task's score (`Task.score`: map_50, miou) on the n images after the attack
    loss: float  # the task's loss on them: what the attack climbs
    n: int
    seconds: float  # wall time of the attack at this eps

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class TaskRobustness:
    """PGD at several radii on the same n images; points[0] is eps = 0, the clean score."""

    metric: str  # the task's score: map_50 or miou
    steps: int
    n: int
    points: list[TaskPoint]
    adversarial: Tensor  # (N, C, H, W) the images attacked at the largest eps, for the pictures
    outputs: Tensor  # the model's raw outputs on them


def task_pgd(model: nn.Module, task: Task, x: Tensor, y: Targets, eps: float, steps: int = 20) -> Tensor:
    """Adversarial images (N, C, H, W) in [0, 1] within `eps` (L-inf) of x that raise
    `task.loss` on the true targets y: PGD (Madry et al. 2018) on the task's own loss. Use the
    model in eval mode (its BatchNorm statistics fixed), as for scoring."""
    return pgd(model, x, y, eps, steps=steps, loss=task.loss)


def robust_scores(
    model: nn.Module,
    task: Task,
    x: Tensor,
    y: Targets,
    eps: Sequence[float] = (0.01, 0.03),
    steps: int = 20,
    batch_size: int = 100,
    seed: int = 0,
) -> TaskRobustness:
    """The task's score and loss of `model` (put in eval mode) on x (N, C, H, W) in [0, 1] with
    targets y, after `task_pgd` at each eps; the first point is eps = 0. Batches of `batch_size`
    images are attacked on the model's device; `seed` fixes the random starts."""
    if task.name == "classify":
        raise CnnlabError("a classifier's robustness is its accuracy under attack: use robust_accuracy.")
    radii = [check_eps(e) for e in eps]
    check_images(x)
    device = next(model.parameters(), torch.empty(0)).device
    points, adversarial, outputs = [], x, torch.empty(0)
    with eval_mode(model):
        for e in [0.0, *sorted(set(radii) - {0.0})]:
            torch.manual_seed(seed)
            start, attacked, out = time.perf_counter(), [], []
            for i in range(0, len(x), batch_size):
                xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
                xa = xb if e == 0 else task_pgd(model, task, xb, yb, e, steps)
                with torch.no_grad():
                    out.append(model(xa).float().cpu())
                attacked.append(xa.cpu())
            adversarial, outputs = torch.cat(attacked), torch.cat(out)
            numbers = task.metrics(outputs, y.to("cpu"))
            points.append(TaskPoint(e, numbers[task.score], numbers["loss"], len(x), time.perf_counter() - start))
    return TaskRobustness(task.score, steps, len(x), points, adversarial, outputs)
