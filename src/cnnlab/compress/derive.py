"""A derived run: a new run directory whose model was made from a parent run's model.

Its provenance.json holds the usual record (data hashed, seed, versions) plus `derived`: the
method, the parent's path and what rebuilding the model needs (cnnlab.models.derived), so
`Run.load` opens it like any run. A derived model that is fine-tuned trains through the one
loop (`cnnlab.training.fit`); one that is not (int8, an assembled tree) is saved and scored
on the test split here, as a training's end would.
"""

from __future__ import annotations

import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab import energy
from cnnlab.bench import forward_times
from cnnlab.data import Dataset
from cnnlab.files import finite, save_weights
from cnnlab.provenance import now, start_record
from cnnlab.run import BEST, WEIGHTS, Run
from cnnlab.summary import summarize
from cnnlab.training.fit import fit


def start(parent: Run, out: str | Path, derived: dict[str, Any], model: nn.Module, data: Dataset,
          overwrite: bool = False, **config: Any) -> Run:
    """Create the derived run directory: the parent's config (with `config` changes), provenance
    with `derived` pointing to the parent."""
    cfg = replace(parent.config, recipe="none", budget=0.0, **config)
    derived = {**derived, "parent": str(parent.path)}
    if "derived" in parent.provenance and derived["method"] != "tree":  # rebuilt on top of the parent's own derivation
        derived["from"] = parent.provenance["derived"]
    provenance = {**start_record(data, cfg.seed), "task": parent.task.name, "derived": derived}
    return Run.create(out, cfg, provenance, model, overwrite)


def fine_tune(run: Run, data: Dataset, quiet: bool = False, loss: Any = None) -> Run:
    """Train the derived run's model for its config's epochs (the one training loop)."""
    torch.manual_seed(run.config.seed)
    fit(run, data, quiet=quiet, loss=loss)
    return run


def finish_untrained(run: Run, data: Dataset) -> Run:
    """Save a derived model that is not trained further (as model and best weights), score it
    on the test split (energy recorded as the 'evaluation' stage) and complete its records."""
    for name in (WEIGHTS, BEST):
        save_weights(run.model, run.path / name, run.weights_metadata())
    with energy.track(run.path, "evaluation"):
        scores = run.task.evaluate(run.model, data.test, tta=run.config.tta)
    run.log({"event": "test", **{f"test_{k}": finite(v) for k, v in scores.items()}})
    run.record_weights()
    run.provenance["finished"] = now()
    run.save_provenance()
    run.model.eval()
    return run


def latency_ms(model: nn.Module, input_shape: tuple[int, ...], batch: int, repeats: int) -> float:
    """Median milliseconds of a forward pass of `batch` random images, after 2 warm-up passes."""
    return 1000 * statistics.median(forward_times(model, input_shape, batch, repeats))


def size_of(model: nn.Module, input_shape: tuple[int, ...], weights: Path | None = None) -> dict[str, Any]:
    """Parameters, FLOPs per image (torch's counter: the float layers it sees), weights on disk,
    latency at batch 1 and 256: what each compression report sets side by side."""
    s = summarize(model, input_shape)
    return {
        "params": s.params,
        "flops_per_image": s.flops,
        "weights_bytes": weights.stat().st_size if weights is not None and weights.is_file() else None,
        "latency_ms_batch1": latency_ms(model, input_shape, 1, 300),  # a forward of ~0.2 ms: many, for a steady median
        "latency_ms_batch256": latency_ms(model, input_shape, 256, 5),
        "threads": torch.get_num_threads(),
    }

