"""The main job on the embedded default: LeNet-5 on scikit-learn's digits, end to end.

Trains, evaluates on the held-out test split, draws the figures and writes report.html.
Measured here (2 cores, torch 2.14 CPU): see docs/results.md.
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.publish import evaluation_dir, write_report
from cnnlab.report import save_evaluation
from cnnlab.run import Run
from cnnlab.tasks.classify import Evaluation
from cnnlab.training import TrainConfig, train

# 1257 training images: small batches give LeNet-5 enough steps to converge in seconds.
RECIPE = TrainConfig(model="lenet5", data="digits", epochs=20, batch_size=32, lr=0.05, schedule="onecycle")


def quickstart(out: str | Path = "runs/quickstart", quiet: bool = False) -> tuple[Run, Evaluation, Path]:
    """Train the recipe into `out` (replacing an earlier quickstart run there), evaluate it,
    and write its report. Returns the run, the test evaluation and the report's path."""
    from cnnlab.data import load_data

    data = load_data(RECIPE.data)
    run = train(RECIPE, out=out, data=data, overwrite=True, quiet=quiet)
    evaluation = run.evaluate(data)
    save_evaluation(evaluation, data.test.x, evaluation_dir(run))
    return run, evaluation, write_report(run)
