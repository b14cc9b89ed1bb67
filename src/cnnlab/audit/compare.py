"""Runs side by side: accuracy against what it cost (parameters, FLOPs, time, energy, CO2).

`cnnlab compare RUN RUN...` makes the lecture's point measurable: a ResNet buys a few points of
accuracy with ten times LeNet-5's parameters and many times its energy. Energy is CodeCarbon's
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
    return {
        "run": run.name,
        "path": str(run.path),
        "model": run.config.model,
        "data": run.config.data,
        "task": run.task.name,
        "epochs": run.config.epochs,
        score: test.get(score),
        **{k: size[k] for k in ("params", "flops_per_image", "weights_bytes", "latency_ms_batch1", "throughput_batch256")},
        "train_seconds": trained["duration_s"] if trained else None,
        "train_kwh": trained["energy_kwh"] if trained else None,
        "train_kg_co2eq": trained["emissions_kg_co2eq"] if trained else None,
        "energy_method": trained["method"] if trained else "not measured",
        "energy_uncertainty": trained["uncertainty"] if trained else "",
        "country": trained["country"] if trained else None,
    }


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
        },
    }
