"""Runs side by side: accuracy against what it cost (parameters, FLOPs, time, energy, CO2).

`cnnlab compare RUN RUN...` makes the lecture's point measurable: a ResNet buys a few points of
accuracy with ten times LeNet-5's parameters and many times its energy; a pruned, int8 or
distilled run (`cnnlab compress`) shows what it gave up for its size, an arrow from its parent. Energy is CodeCarbon's
training-stage record (see `cnnlab.energy`), with its method beside every number.

Runs of one task are compared by its score on the test split, as training measured it: a
classifier's accuracy (`test_acc`), a segmenter's mean IoU (`test_miou`), a detector's mAP@0.5
(`test_map_50`); runs of different tasks have no score in common and are not compared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab import energy
from cnnlab.audit.figures import accuracy_vs
from cnnlab.audit.runs import read_audit, size_run
from cnnlab.errors import CnnlabError
from cnnlab.run import Run
from cnnlab.tasks.names import label


def compare_row(run: Run, remeasure: bool = False) -> dict[str, Any]:
    size = None if remeasure else read_audit(run, "size")
    size = size or size_run(run)
    test = run.test_result()
    if test is None:
        raise CnnlabError(f"{run.path} has no test result yet; finish it with `cnnlab train --resume {run.path}`.")
    trained = energy.total(run.path, "training")
    score = f"test_{run.task.score}"
    derived = run.provenance.get("derived", {})
    return {
        "run": run.name,
        "path": str(run.path),
        "model": run.config.model,
        "data": run.config.data,
        "task": run.task.name,
        "epochs": run.config.epochs,
        score: test.get(score),
        **{k: size[k] for k in ("params", "flops_per_image", "weights_bytes", "latency_ms_batch1", "throughput_batch256")},
        "weights_mb": size["weights_bytes"] / 1e6 if size["weights_bytes"] else None,
        "latency_ms_batch256": 256_000 / size["throughput_batch256"],
        "predict_kwh_per_10k": prediction_energy(run),
        "parent": derived.get("parent"),  # the run it was derived from (cnnlab tree, cnnlab compress)
        "derived_by": derived.get("method"),
        "train_seconds": trained["duration_s"] if trained else None,
        "train_kwh": trained["energy_kwh"] if trained else None,
        "train_kg_co2eq": trained["emissions_kg_co2eq"] if trained else None,
        "energy_method": trained["method"] if trained else "not measured",
        "energy_uncertainty": trained["uncertainty"] if trained else "",
        "country": trained["country"] if trained else None,
    }


def prediction_energy(run: Run) -> float | None:
    """kWh per 10,000 predictions: the energy of the test pass that ended the run (its first
    'evaluation' record) over the test images, times 10,000. Where the machine has no energy
    counter it is CodeCarbon's estimate from the process's CPU load (see `cnnlab.energy`)."""
    first = next((r for r in energy.read(run.path) if r["stage"] == "evaluation" and "energy_kwh" in r), None)
    images = run.provenance["data"].get("sizes", {}).get("test")
    return first["energy_kwh"] / images * 10_000 if first and images else None


def compare_runs(paths: list[Path], out: Path, remeasure: bool = False) -> dict[str, Any]:
    if len(paths) < 1:
        raise CnnlabError("give at least one run to compare: cnnlab compare RUN RUN...")
    runs = [Run.load(p) for p in paths]
    tasks = {run.task.name: run.name for run in runs}
    if len(tasks) > 1:
        raise CnnlabError("runs of different tasks have no score in common, so compare runs of one task ("
                          + ", ".join(f"{name} learned {task}" for task, name in tasks.items()) + ").")
    task = runs[0].task
    score, score_label = f"test_{task.score}", f"test {label(task.score)}"
    rows = [compare_row(run, remeasure) for run in runs]
    methods = sorted({r["energy_method"] for r in rows})
    estimated = any("load" in m for m in methods)
    kwh_label = "training energy (kWh, CodeCarbon; " + ("load-based estimate" if estimated else "RAPL") + ")"
    return {
        "task": task.name,
        "score": score,
        "score_label": score_label,
        "rows": rows,
        "energy_methods": methods,
        "figures": {
            "accuracy_vs_energy": str(accuracy_vs(rows, "train_kwh", kwh_label, out / "accuracy_vs_energy.png",
                                                  score, score_label)),
            "accuracy_vs_params": str(accuracy_vs(rows, "params", "learned parameters", out / "accuracy_vs_params.png",
                                                  score, score_label)),
            "accuracy_vs_size": str(accuracy_vs(rows, "weights_mb", "weights on disk (MB)", out / "accuracy_vs_size.png",
                                                score, score_label)),
            "accuracy_vs_prediction_energy": str(accuracy_vs(
                rows, "predict_kwh_per_10k", "energy per 10,000 predictions (kWh, CodeCarbon; "
                + ("load-based estimate" if estimated else "RAPL") + ")", out / "accuracy_vs_prediction_energy.png",
                score, score_label)),
        },
    }
