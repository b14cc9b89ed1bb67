"""What a trained run learned, saved in the run: `show_run` writes its first-layer filters and
its conv layers' feature maps for image files into RUN/inside/, which the report's section shows.

    cnnlab show RUN --filters --feature-maps IMG

`mlp_vs_cnn_record` reads the record of the MLP vs CNN experiment a run was trained by.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.inside.pictures import INSIDE, save_feature_maps, save_filters
from cnnlab.run import Run

EXPERIMENT = "experiment.json"  # an experiment's record beside its runs (cnnlab.experiments.folder.RECORD)


def show_run(run: Run, filters: bool = False, images: list[Path] | None = None) -> dict[str, Any]:
    """Save the filters (if `filters`) and the feature maps of each image file in RUN/inside/.

    The images are read as the run's input (channels and size), every file before any work, so
    a bad one is named before anything is written. Returns what was saved: {"run", "filters":
    {file, layer, shape, min, max}, "feature_maps": {image: [{layer, shape, file}]}}.
    """
    from cnnlab.data.images import read_image

    if not filters and not images:
        raise CnnlabError("say what to show: --filters and/or --feature-maps IMG.")
    run.require_images("show (2-D filters and feature maps of an image)")
    c, h, w = run.input_shape
    pixels = [(p, read_image(p, c, (h, w))) for p in images or []]
    folder = run.path / INSIDE
    doc: dict[str, Any] = {"run": str(run.path)}
    if filters:
        path, info = save_filters(run.model, folder)
        doc["filters"] = {"file": str(path), **info}
    if pixels:
        doc["feature_maps"] = {str(p): save_feature_maps(run.model, x, p.stem, folder) for p, x in pixels}
    return doc


def mlp_vs_cnn_record(run: Run) -> dict[str, Any] | None:
    """The record of the MLP vs CNN experiment (`cnnlab.experiments.mlp_vs_cnn`) that trained
    `run`, or None. The experiment keeps it in the folder of its runs, not inside any one run."""
    file = run.path.parent / EXPERIMENT
    if not file.is_file():
        return None
    record = json.loads(file.read_text())
    if record.get("experiment") != "mlp-vs-cnn" or run.name not in {Path(p).name for p in record["runs"].values()}:
        return None
    return record
