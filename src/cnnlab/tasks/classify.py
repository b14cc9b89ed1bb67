"""Classification: a class per image, learned by cross-entropy, scored by accuracy, per-class
precision/recall/F1 and the confusion matrix.

Works on any `nn.Module` that maps pixels (N, C, H, W) in [0, 1] to logits (N, K).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.data.targets import mirror_order
from cnnlab.errors import CnnlabError
from cnnlab.tasks.base import Task, register_task

if TYPE_CHECKING:
    from cnnlab.data import Dataset, Split


def predict_logits(model: nn.Module, x: Tensor, batch_size: int = 512, tta: bool = False,
                   classes: list[str] | None = None) -> Tensor:
    """Logits (N, K) in eval mode, batch by batch, on the model's device; returned on the CPU.

    `tta`: flip test-time augmentation, the mean of the logits of each image and its mirror
    (left-right), as the speed-run recipes score (airbench); costs a second forward pass. With
    the `classes` named, a mirror's scores are read in the classes they mirror (`Classify.unflip`).
    """
    return Classify(classes or []).outputs(model, x, batch_size, tta)


def confusion_matrix(y_true: Tensor, y_pred: Tensor, num_classes: int) -> Tensor:
    """(K, K) counts; row = true class, column = predicted class."""
    flat = y_true.long() * num_classes + y_pred.long()
    return torch.bincount(flat, minlength=num_classes**2).view(num_classes, num_classes)


def per_class_scores(confusion: Tensor) -> list[dict[str, float]]:
    """Precision = TP / predicted, recall = TP / true, F1 their harmonic mean (0 when undefined)."""
    tp = confusion.diag().double()
    predicted = confusion.sum(0).double()
    support = confusion.sum(1).double()
    precision = torch.where(predicted > 0, tp / predicted.clamp_min(1), 0.0)
    recall = torch.where(support > 0, tp / support.clamp_min(1), 0.0)
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp_min(1e-12), 0.0)
    return [
        {"precision": p, "recall": r, "f1": f, "support": int(s)}
        for p, r, f, s in zip(precision.tolist(), recall.tolist(), f1.tolist(), support.tolist())
    ]


def most_confused(confusion: Tensor, k: int = 5) -> list[tuple[int, int, int]]:
    """The k largest off-diagonal cells as (true, predicted, count), most frequent first."""
    off = confusion.clone()
    off.fill_diagonal_(0)
    counts, flat = off.flatten().sort(descending=True)
    n = confusion.shape[0]
    return [(int(i) // n, int(i) % n, int(c)) for c, i in zip(counts[:k], flat[:k]) if c > 0]


@dataclass
class Evaluation:
    classes: list[str]
    accuracy: float
    loss: float
    confusion: Tensor  # (K, K) int64, row = true class
    per_class: list[dict[str, float]]
    most_confused: list[tuple[int, int, int]]
    y_true: Tensor  # (N,)
    probs: Tensor  # (N, K) softmax probabilities

    @property
    def y_pred(self) -> Tensor:
        return self.probs.argmax(1)

    @property
    def misclassified(self) -> Tensor:
        """Indices of wrong predictions, the most confidently wrong first."""
        wrong = torch.nonzero(self.y_pred != self.y_true).flatten()
        return wrong[self.probs[wrong].max(1).values.argsort(descending=True)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "loss": self.loss,
            "n": len(self.y_true),
            "classes": self.classes,
            "per_class": {c: s for c, s in zip(self.classes, self.per_class)},
            "macro_f1": sum(s["f1"] for s in self.per_class) / len(self.per_class),
            "confusion": self.confusion.tolist(),
            "most_confused": [
                {"true": self.classes[t], "predicted": self.classes[p], "count": c}
                for t, p, c in self.most_confused
            ],
        }


def evaluate(model: nn.Module, x: Tensor, y: Tensor, classes: list[str], batch_size: int = 512, tta: bool = False) -> Evaluation:
    """Evaluate `model` on images x (N, C, H, W) in [0, 1] with labels y (N,) (`tta`: see predict_logits)."""
    return evaluation_of(predict_logits(model, x, batch_size, tta, classes), y, classes)


def evaluation_of(logits: Tensor, y: Tensor, classes: list[str]) -> Evaluation:
    """The evaluation of logits (N, K) against labels y (N,)."""
    confusion = confusion_matrix(y, logits.argmax(1), len(classes))
    return Evaluation(
        classes=list(classes),
        accuracy=(logits.argmax(1) == y).float().mean().item(),
        loss=F.cross_entropy(logits, y).item(),
        confusion=confusion,
        per_class=per_class_scores(confusion),
        most_confused=most_confused(confusion),
        y_true=y.clone(),
        probs=logits.softmax(1),
    )


@register_task
class Classify(Task):
    name = "classify"
    target = "a class per image"
    score = "acc"
    train_metrics = ("acc",)

    def loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(outputs, y, label_smoothing=self.label_smoothing)

    def per_example_loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(outputs, y, reduction="none", label_smoothing=self.label_smoothing)

    def train_sums(self, outputs: Tensor, y: Tensor) -> Tensor:
        return (outputs.argmax(1) == y).sum().to(torch.float64).view(1)

    def metrics(self, outputs: Tensor, y: Tensor) -> dict[str, float]:
        return {"loss": F.cross_entropy(outputs, y).item(), "acc": (outputs.argmax(1) == y).float().mean().item()}

    def unflip(self, outputs: Tensor) -> Tensor:
        """The scores of a mirrored image, class by class of the original: the mirror of a clip
        moving left moves right, so its "right" score is the original's "left" one; classes
        without a counterpart (shirts, digits) keep their column."""
        return outputs[:, mirror_order(self.classes)] if self.classes else outputs  # unnamed: nothing to rename

    def decode(self, outputs: Tensor) -> Tensor:
        return outputs.argmax(1)

    def check_outputs(self, outputs: Tensor, data: Dataset) -> None:
        if outputs.ndim != 2 or outputs.shape[1] != data.num_classes:
            raise CnnlabError(
                f"your model outputs shape {tuple(outputs.shape)} but {data.name} needs (N, {data.num_classes}) logits."
            )

    def pictures(self, outputs: Tensor, split: Split, out: Path) -> dict[str, Path]:
        from cnnlab.report.evaluation import save_evaluation

        return save_evaluation(evaluation_of(outputs, split.y, self.classes), split.x, out)
