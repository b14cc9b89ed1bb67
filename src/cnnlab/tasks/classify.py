"""How good is a classifier: accuracy, per-class precision/recall/F1, the confusion matrix.

Works on any `nn.Module` that maps pixels (N, C, H, W) in [0, 1] to logits (N, K).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@torch.inference_mode()
def predict_logits(model: nn.Module, x: Tensor, batch_size: int = 512, tta: bool = False) -> Tensor:
    """Logits (N, K) in eval mode, batch by batch, on the model's device; returned on the CPU.

    `tta`: flip test-time augmentation, the mean of the logits of each image and its mirror
    (left-right), as the speed-run recipes score (airbench); costs a second forward pass.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device

    def logits(batch: Tensor) -> Tensor:
        batch = batch.to(device)
        return (model(batch) + model(batch.flip(3))) / 2 if tta else model(batch)

    try:
        out = [logits(x[i : i + batch_size]).float().cpu() for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def loss_and_accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 512, tta: bool = False) -> tuple[float, float]:
    logits = predict_logits(model, x, batch_size, tta)
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


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
    logits = predict_logits(model, x, batch_size, tta)
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
