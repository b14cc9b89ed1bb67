"""The evaluation a run publishes: `evaluate_run` evaluates a split and writes its files into
RUN/evaluation/<data>-<split>/ (what `cnnlab evaluate` does), `evaluation_result` reads the
evaluation of the run's own test split back for the report and the model card, and the names
and tables of a task's numbers that the command line, the report and the card all print.

Every task writes the same way: the run's task scores the split's raw outputs and draws its
pictures (`Task.pictures`: evaluation.json, then the confusion matrix and mistakes of a
classifier, the masks of a segmenter, the boxes and precision-recall curves of a detector).
A detector's or segmenter's predictions can also go out in COCO's results format
(cocodataset.org/#format-results), beside the split's own targets as a COCO ground-truth file,
so that pycocotools or any COCO tool scores them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.errors import CnnlabError
from cnnlab.files import slug
from cnnlab.run import Run
from cnnlab.tasks.names import PER_CLASS, label

if TYPE_CHECKING:
    from torch import Tensor

    from cnnlab.data import Dataset, Split
    from cnnlab.tasks import Task

EVALUATION = "evaluation"


def evaluation_dir(run: Run, data: str | None = None, split: str = "test", weights: str = "model") -> Path:
    """Where `cnnlab evaluate` writes the evaluation of `data` (default: the run's) on `split`."""
    name = f"{slug(data or run.config.data)}-{split}" + ("" if weights == "model" else f"-{weights}")
    return run.path / EVALUATION / name


def evaluation_result(run: Run) -> dict[str, Any] | None:
    """evaluation.json of the run's own test split with its last weights, or None if not evaluated."""
    return run.results(f"{EVALUATION}/{evaluation_dir(run).name}/evaluation")


def evaluate_run(run: Run, data: str | None = None, split: str = "test", weights: str = "model",
                 on_corrupt: str = "skip", coco_results: str | Path | None = None,
                 ) -> tuple[dict[str, Any], Dataset, dict[str, Path]]:
    """Evaluate `run` on `split` of its own dataset, or of dataset `data` (an image folder is
    resized to the run's input; its channels and classes must fit), with the energy it takes
    recorded in the run; write the task's files into `evaluation_dir(run, data, split, weights)`.
    With `coco_results` (detection and segmentation), also write the predictions there in COCO
    results format and the split's targets beside them as FILE-ground-truth.json.

    weights: which weights `run` was loaded with ('model' or 'best'), to name the folder.
    Returns what evaluation.json holds (a classifier's `Evaluation.to_dict()`; a segmenter's
    miou, pixel_acc, class_acc, per_class {class: IoU}; a detector's map, map_50, per_class
    {class: {ap, ap_50, recall}}; loss for all), the dataset and {name: path} of the files written.
    """
    from cnnlab import energy
    from cnnlab.data import load_data

    task = run.task
    if coco_results is not None and task.name not in ("detect", "segment"):
        raise CnnlabError(f"COCO results hold boxes or masks, and run {run.name} learned the {task.name} task; "
                          "drop --coco-results.")
    dataset = load_data(data, image_size=run.input_shape[-1], on_corrupt=on_corrupt) if data else run.load_data()
    part = run.split(dataset, split)
    with energy.track(run.path, f"evaluation ({dataset.name} {split})"):
        outputs = task.outputs(run.model, part.x, tta=run.config.tta)
    files = task.pictures(outputs, part, evaluation_dir(run, data, split, weights))
    if coco_results is not None:
        files |= write_coco_predictions(task, outputs, part, dataset, Path(coco_results))
    return json.loads(files["evaluation"].read_text()), dataset, files


def write_coco_predictions(task: Task, outputs: Tensor, part: Split, data: Dataset, path: Path) -> dict[str, Path]:
    """A detector's boxes (`bbox` [x, y, w, h], `score`) or a segmenter's masks (RLE
    `segmentation`, one entry per class present in an image, score 1) decoded from `outputs`
    on `part`, written to `path` in COCO results format, in each source image's pixels and
    with its id (a coco: folder's own; 1..N in split order for generated data), and the
    split's targets as a COCO instances file beside it (PATH-ground-truth.json), so that
    pycocotools' COCOeval scores the one against the other.
    Returns {"coco_results": path, "coco_ground_truth": path}."""
    from cnnlab.data.coco_results import (
        category_ids,
        coco_image_ids,
        original_scale,
        write_coco_ground_truth,
        write_coco_results,
    )

    ids, categories, scale = coco_image_ids(part), category_ids(data), original_scale(part)
    write_coco_results(path, task.decode(outputs), ids, categories, scale)
    truth = path.with_name(f"{path.stem}-ground-truth.json")
    write_coco_ground_truth(truth, part, task.classes, categories, task.name)
    return {"coco_results": path, "coco_ground_truth": truth}


# -- the numbers as tables, for the command line, the report and the card ---------------------
def number(value: float | None, digits: int = 4) -> str:
    """A score as text: 'n/a' where nothing was measured (a class absent from the split)."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def headline(result: dict[str, Any], score: str) -> list[tuple[str, float | None]]:
    """(name, value) of the numbers over the whole split in a detection or segmentation
    evaluation, its task's `score` first ('miou', 'map_50') and the loss last."""
    keys = [k for k, v in result.items() if isinstance(v, (int, float)) or (v is None and k != "per_class")]
    keys = sorted(keys, key=lambda k: (k != score, k == "loss"))
    return [(label(k), result[k]) for k in keys]


def per_class_table(result: dict[str, Any], task: str, digits: int = 3) -> tuple[list[str], list[list[str]]]:
    """The header and rows of a detection or segmentation evaluation's per_class numbers."""
    per_class = result["per_class"]
    first = next(iter(per_class.values()), None)
    if isinstance(first, dict):
        keys = list(first)
        return ["class", *map(label, keys)], [[c, *(number(s[k], digits) for k in keys)] for c, s in per_class.items()]
    return ["class", PER_CLASS.get(task, "score")], [[c, number(v, digits)] for c, v in per_class.items()]
