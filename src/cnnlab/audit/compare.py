"""Runs side by side: accuracy against what it cost (parameters, FLOPs, time, energy, CO2).

`cnnlab compare RUN RUN...` makes the lecture's point measurable: a ResNet buys a few points of
accuracy with ten times LeNet-5's parameters and many times its energy. Energy is CodeCarbon's
training-stage record (see `cnnlab.energy`), with its method beside every number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab import energy
from cnnlab.audit.runs import read_audit, size_run
from cnnlab.errors import CnnlabError
from cnnlab.report.figures import _pyplot, _save
from cnnlab.run import Run


def compare_row(run: Run, remeasure: bool = False) -> dict[str, Any]:
    size = None if remeasure else read_audit(run.path, "size")
    size = size or size_run(run)
    test = next((m for m in reversed(run.metrics()) if m.get("event") == "test"), None)
    if test is None:
        raise CnnlabError(f"{run.path} has no test result yet; finish it with `cnnlab train --resume {run.path}`.")
    trained = energy.total(run.path, "training")
    return {
        "run": run.name,
        "path": str(run.path),
        "model": run.config.model,
        "data": run.config.data,
        "epochs": run.config.epochs,
        "test_acc": test["test_acc"],
        **{k: size[k] for k in ("params", "flops_per_image", "weights_bytes", "latency_ms_batch1", "throughput_batch256")},
        "train_seconds": trained["duration_s"] if trained else None,
        "train_kwh": trained["energy_kwh"] if trained else None,
        "train_kg_co2eq": trained["emissions_kg_co2eq"] if trained else None,
        "energy_method": trained["method"] if trained else "not measured",
        "energy_uncertainty": trained["uncertainty"] if trained else "",
        "country": trained["country"] if trained else None,
    }


def accuracy_vs(rows: list[dict[str, Any]], key: str, label: str, path: Path) -> Path:
    """Test accuracy (y) against `key` (x, log scale), one labelled point per run."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    points = [r for r in rows if r.get(key)]
    for r in points:
        ax.scatter(r[key], r["test_acc"], s=40)
        ax.annotate(f"{r['model']}\n{r['run']}", (r[key], r["test_acc"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("test accuracy")
    missing = [r["run"] for r in rows if not r.get(key)]
    title = f"accuracy vs {label.split(' (')[0]}" + (f"\n(not measured: {', '.join(missing)})" if missing else "")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.margins(y=0.2)  # room above the top point for its label
    if points:  # room for the labels on the right of the last point
        xs = [r[key] for r in points]
        ax.set_xlim(min(xs) / 2, max(xs) * 4)
    return _save(fig, path)


def compare_runs(paths: list[Path], out: Path, remeasure: bool = False) -> dict[str, Any]:
    if len(paths) < 1:
        raise CnnlabError("give at least one run to compare: cnnlab compare RUN RUN...")
    rows = [compare_row(Run.load(p), remeasure) for p in paths]
    methods = sorted({r["energy_method"] for r in rows})
    kwh_label = "training energy (kWh, CodeCarbon; " + ("load-based estimate" if any("load" in m for m in methods) else "RAPL") + ")"
    return {
        "rows": rows,
        "energy_methods": methods,
        "figures": {
            "accuracy_vs_energy": str(accuracy_vs(rows, "train_kwh", kwh_label, out / "accuracy_vs_energy.png")),
            "accuracy_vs_params": str(accuracy_vs(rows, "params", "learned parameters", out / "accuracy_vs_params.png")),
        },
    }
