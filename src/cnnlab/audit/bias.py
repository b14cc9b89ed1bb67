"""Per-group errors of a classifier: where does it fail, and for whom?

fairlearn's MetricFrame (Bird et al. 2020) computes each metric per group; we use it for
multiclass image classifiers: accuracy and error rate per group and per class, the largest gap
between groups, and the two numbers of the group-robustness literature (Sagawa et al. 2020):
average accuracy over all test images and worst-group accuracy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from torch import Tensor


@dataclass
class BiasResult:
    groups: str  # what the groups are, e.g. "the groups of tinted-fashion-mnist"
    by_group: list[dict[str, Any]]  # {group, accuracy, error_rate, count}
    by_class: list[dict[str, Any]]  # {class, accuracy, error_rate, count, worst_group, worst_group_accuracy}
    average_accuracy: float  # over all images
    mean_group_accuracy: float  # unweighted mean over groups
    worst_group: str
    worst_group_accuracy: float
    largest_gap: float  # best group's accuracy minus the worst's
    min_group_size: int  # groups this small give noisy accuracies

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _error_rate(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(y_true != y_pred))


def _accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(y_true == y_pred))


def _count(y_true: np.ndarray, y_pred: np.ndarray) -> int:
    return len(y_true)


def group_metrics(
    y_true: Tensor, y_pred: Tensor, group_ids: Tensor, group_names: list[str], classes: list[str], groups: str = ""
) -> BiasResult:
    """Per-group and per-class accuracy of predictions y_pred (N,) against y_true (N,), groups (N,)."""
    from fairlearn.metrics import MetricFrame

    t, p = y_true.cpu().numpy(), y_pred.cpu().numpy()
    g = np.array([group_names[i] for i in group_ids.tolist()])
    metrics = {"accuracy": _accuracy, "error_rate": _error_rate, "count": _count}
    frame = MetricFrame(metrics=metrics, y_true=t, y_pred=p, sensitive_features={"group": g})
    by_group = frame.by_group.reset_index().sort_values("accuracy")
    by_group_rows = [
        {"group": r.group, "accuracy": float(r.accuracy), "error_rate": float(r.error_rate), "count": int(r.count)}
        for r in by_group.itertuples()
    ]
    # Per class, and within each class the group it serves worst (the class x group cells).
    cls = np.array([classes[i] for i in t])
    per_class = MetricFrame(metrics=metrics, y_true=t, y_pred=p, sensitive_features={"class": cls}).by_group
    cells = MetricFrame(metrics=_accuracy, y_true=t, y_pred=p, sensitive_features={"class": cls, "group": g}).by_group
    by_class_rows = []
    for name in classes:
        if name not in per_class.index:
            continue
        row = per_class.loc[name]
        within = cells.loc[name].dropna()
        by_class_rows.append({
            "class": name, "accuracy": float(row["accuracy"]), "error_rate": float(row["error_rate"]),
            "count": int(row["count"]), "worst_group": str(within.idxmin()), "worst_group_accuracy": float(within.min()),
        })
    worst = by_group_rows[0]
    return BiasResult(
        groups=groups,
        by_group=by_group_rows,
        by_class=by_class_rows,
        average_accuracy=float(frame.overall["accuracy"]),
        mean_group_accuracy=float(frame.by_group["accuracy"].mean()),
        worst_group=worst["group"],
        worst_group_accuracy=worst["accuracy"],
        largest_gap=float(frame.difference(method="between_groups")["accuracy"]),
        min_group_size=int(frame.by_group["count"].min()),
    )
