"""The evaluation a run publishes: `evaluate_run` evaluates a split and writes its files into
RUN/evaluation/<data>-<split>/ (what `cnnlab evaluate` does), `evaluation_result` reads the
evaluation of the run's own test split back for the report and the model card.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.files import slug
from cnnlab.report.evaluation import save_evaluation
from cnnlab.run import Run

if TYPE_CHECKING:
    from cnnlab.data import Dataset
    from cnnlab.tasks.classify import Evaluation

EVALUATION = "evaluation"


def evaluation_dir(run: Run, data: str | None = None, split: str = "test", weights: str = "model") -> Path:
    """Where `cnnlab evaluate` writes the evaluation of `data` (default: the run's) on `split`."""
    name = f"{slug(data or run.config.data)}-{split}" + ("" if weights == "model" else f"-{weights}")
    return run.path / EVALUATION / name


def evaluation_result(run: Run) -> dict[str, Any] | None:
    """evaluation.json of the run's own test split with its last weights, or None if not evaluated."""
    return run.results(f"{EVALUATION}/{evaluation_dir(run).name}/evaluation")


def evaluate_run(run: Run, data: str | None = None, split: str = "test", weights: str = "model",
                 on_corrupt: str = "skip") -> tuple[Evaluation, Dataset, dict[str, Path]]:
    """Evaluate `run` on `split` of its own dataset, or of dataset `data` (an image folder is
    resized to the run's input; its channels and classes must fit), with the energy it takes
    recorded in the run; write the files into `evaluation_dir(run, data, split, weights)`.

    weights: which weights `run` was loaded with ('model' or 'best'), to name the folder.
    Returns the evaluation, the dataset and {name: path} of the files written.
    """
    from cnnlab import energy
    from cnnlab.data import load_data

    dataset = load_data(data, image_size=run.input_shape[1], on_corrupt=on_corrupt) if data else run.load_data()
    with energy.track(run.path, f"evaluation ({dataset.name} {split})"):
        evaluation = run.evaluate(dataset, split)
    files = save_evaluation(evaluation, dataset.splits()[split].x, evaluation_dir(run, data, split, weights))
    return evaluation, dataset, files
