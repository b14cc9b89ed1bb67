"""The names people read for the numbers the tasks report: 'miou' is 'mean IoU' in a table.

Each task module says how its numbers are measured; these are only their names, shared by
everything that prints them (the command line, the report, the model card, `cnnlab compare`).
"""

from __future__ import annotations

LABELS = {
    "acc": "accuracy", "loss": "loss", "miou": "mean IoU", "pixel_acc": "pixel accuracy",
    "class_acc": "class-average accuracy", "map": "mAP@[.5:.95]", "map_50": "mAP@0.5",
    "ap": "AP@[.5:.95]", "ap_50": "AP@0.5", "recall": "recall",
    "pck20": "PCK@0.2", "pck05": "PCK@0.05", "pcp": "PCP",
    **{f"stage{s}_{k}": f"stage {s} {v}" for s in range(1, 4) for k, v in (("pck20", "PCK@0.2"), ("pck05", "PCK@0.05"), ("pcp", "PCP"))},
}
PER_CLASS = {"segment": "IoU", "generate": "D(x)"}  # what a task's per_class holds where it is one number per class


def label(metric: str) -> str:
    """The name people read for a metric: 'miou' -> 'mean IoU'; an unknown one, its key in words."""
    return LABELS.get(metric, metric.replace("_", " "))
