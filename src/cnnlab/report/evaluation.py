"""An Evaluation on disk: evaluation.json, the confusion matrix and the misclassified grid.

Only tensors and a folder: where a run keeps them is `cnnlab.publish.evaluation`'s business."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from torch import Tensor

from cnnlab.files import atomic_write_text
from cnnlab.report import figures

if TYPE_CHECKING:
    from cnnlab.tasks.classify import Evaluation


def save_evaluation(evaluation: Evaluation, x: Tensor, out: Path, max_examples: int = 24) -> dict[str, Path]:
    """`x` are the evaluated images (N, C, H, W), used to show the misclassified ones."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "evaluation.json", json.dumps(evaluation.to_dict(), indent=2) + "\n")
    wrong = evaluation.misclassified[:max_examples]
    classes = evaluation.classes
    titles = [
        f"true {classes[int(evaluation.y_true[i])]}\npred {classes[int(evaluation.y_pred[i])]} "
        f"{float(evaluation.probs[i].max()):.2f}"
        for i in wrong
    ]
    return {
        "evaluation": out / "evaluation.json",
        "confusion": figures.confusion_matrix(evaluation.confusion, classes, out / "confusion.png"),
        "misclassified": figures.image_grid(x[wrong], titles, out / "misclassified.png"),
    }

