"""The pictures of the audits: test accuracy (or a task's score) against what a model costs, one point per run.

Each takes plain rows and writes one PNG through `cnnlab.report.figures` (matplotlib, Agg).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.report.figures import pyplot, save_figure


def accuracy_vs(rows: list[dict[str, Any]], key: str, label: str, path: Path, score: str = "test_acc",
                score_label: str = "test accuracy") -> Path:
    """Test accuracy, or the task's `score` (y), against `key` (x, log scale), one labelled point per run."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    points = [r for r in rows if r.get(key) and r.get(score) is not None]
    for r in points:
        ax.scatter(r[key], r[score], s=40)
        ax.annotate(f"{r['model']}\n{r['run']}", (r[key], r[score]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    by_path = {str(Path(r["path"]).resolve()): r for r in points if r.get("path")}
    for r in points:  # a derived run (pruned, int8, distilled, a tree): an arrow from its parent
        parent = by_path.get(str(Path(r["parent"]).resolve())) if r.get("parent") else None
        if parent is not None:
            ax.annotate("", xy=(r[key], r[score]), xytext=(parent[key], parent[score]),
                        arrowprops={"arrowstyle": "->", "color": "gray", "lw": 1.2})
    ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel(score_label)
    missing = [r["run"] for r in rows if r not in points]
    name = score_label.removeprefix("test ")
    title = f"{name} vs {label.split(' (')[0]}" + (f"\n(not measured: {', '.join(missing)})" if missing else "")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.margins(y=0.2)  # room above the top point for its label
    if points:  # room for the labels on the right of the last point
        xs = [r[key] for r in points]
        ax.set_xlim(min(xs) / 2, max(xs) * 4)
    return save_figure(fig, path)
