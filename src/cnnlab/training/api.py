"""Start a run or continue one: `train(...) -> Run`, `resume(path) -> Run`."""

from __future__ import annotations

import time
from dataclasses import fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.config import TrainConfig
from cnnlab.data import Dataset, load_data
from cnnlab.errors import CnnlabError
from cnnlab.files import slug
from cnnlab.models import build_model, check_model_fits
from cnnlab.models.registry import get_entry
from cnnlab.provenance import now, start_record
from cnnlab.run import CHECKPOINT, Run
from cnnlab.tasks import get_task, task_for
from cnnlab.training import distributed
from cnnlab.training.checkpoint import load_state
from cnnlab.training.fit import fit
from cnnlab.training.recipes import apply_recipe, given_options, plan_epochs, recipe_batch_size


def default_out(cfg: TrainConfig) -> Path:
    """runs/<model>-<data>-<time>: a new directory each time, so nothing is overwritten."""
    return Path("runs") / f"{slug(cfg.model)}-{slug(cfg.data)}-{datetime.now():%Y%m%d-%H%M%S}"


def train(
    config: TrainConfig | None = None,
    *,
    out: str | Path | None = None,
    model: str | nn.Module | None = None,
    data: str | Dataset | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    started: float | None = None,
    **overrides: Any,
) -> Run:
    """Train and return the finished Run.

    `config` (or the defaults) updated by keyword `overrides` (`epochs=3`, `lr=0.1`, any
    TrainConfig field). `model` and `data` are registry names, or your own nn.Module (pixels
    in [0, 1] in, logits out) and a Dataset already in memory. `recipe="fast"` fills in the
    options not given; a `budget` (seconds, counted from `started`, a time.time(), default
    now) picks the number of epochs unless `epochs` is given.
    """
    started = time.time() if started is None else started
    unknown = sorted(set(overrides) - {f.name for f in fields(TrainConfig)})
    if unknown:
        raise CnnlabError(f"unknown training option(s) {', '.join(unknown)}; see TrainConfig for the names.")
    if isinstance(model, str):
        overrides["model"], model = model, None
    if isinstance(data, str):
        overrides["data"], data = data, None
    elif data is not None:  # config.toml names what the run learned from: a later `evaluate` reloads it by name
        overrides["data"] = data.name
    cfg = replace(config or TrainConfig(), **overrides)
    given = given_options(config, overrides)
    if cfg.recipe != "none":
        cfg = apply_recipe(cfg, given)
    if model is None:
        cfg = model_choices(cfg, given)
    else:
        cfg = replace(cfg, model=f"custom:{type(model).__name__}")
    cfg = cfg.resolved()
    dist = distributed.join(cfg)  # several processes when torchrun started this one
    cfg = replace(cfg, nproc=dist.world_size)

    if data is None:
        with dist.main_first():  # a download happens once, on rank 0
            data = load_data(cfg.data, **cfg.data_options())
    cfg = recipe_batch_size(cfg, len(data.train), given)
    torch.manual_seed(cfg.seed)  # the initial weights are a function of the seed alone
    if model is None:
        task = task_for(cfg.model, get_entry(cfg.model).tasks, data)
        model = build_model(cfg.model, data.input_shape, data.num_classes, *data.stats())
    else:  # one sentence, not a traceback, when the user's module does not fit the data
        task = data.task
        check_model_fits(model, data.input_shape, None, data.name)
        get_task(task, data.classes).check_model(model, data)
    if cfg.dp:  # Opacus clips per sample: BatchNorm (which mixes a batch) becomes GroupNorm
        from cnnlab.models.private import dp_ready

        model = dp_ready(model)
    provenance = {**start_record(data, cfg.seed), "task": task}
    if cfg.budget > 0 and "epochs" not in given:  # the epochs that fit what is left of the budget
        # rank 0 times the steps and every rank trains its plan (timing on all ranks at once would only slow each other)
        epochs, plan = 0, {}
        if dist.is_main:
            bound = get_task(task, data.classes).bind(model)
            epochs, plan = plan_epochs(model, data.train.x, data.train.y, cfg, time.time() - started, len(data.test),
                                       task=bound)
        epochs = dist.from_main(epochs)
        cfg, provenance["budget"] = replace(cfg, epochs=epochs), plan
    if dist.is_main:
        run = Run.create(out or default_out(cfg), cfg, provenance, model, overwrite)
    path = dist.from_main(run.path if dist.is_main else None)
    if not dist.is_main:  # the other ranks train beside rank 0 and write nothing
        run = Run(path, cfg, provenance, model)
    fit(run, data, quiet=quiet)
    return run


def model_choices(cfg: TrainConfig, given: set[str]) -> TrainConfig:
    """`cfg` with the registered model's own training values (its entry's `training`) for the
    options not in `given` (the ones the user set), after any recipe: the model knows what it
    trains with. A learning rate belongs to its optimizer, so it is not taken when the user
    named another optimizer (which then gets that optimizer's usual rate)."""
    chosen = dict(get_entry(cfg.model).training)
    if "optimizer" in given and cfg.optimizer != chosen.get("optimizer", cfg.optimizer):
        chosen.pop("lr", None)
    return replace(cfg, **{k: v for k, v in chosen.items() if k not in given})


def resume(path: str | Path, *, model: nn.Module | None = None, quiet: bool = False) -> Run:
    """Continue an interrupted run from its checkpoint, exactly where it stopped."""
    path = Path(path)
    checkpoint = path / CHECKPOINT
    if (path / "config.toml").is_file():
        torch.manual_seed(TrainConfig.from_toml(path / "config.toml").seed)  # no checkpoint: same start
    run = Run.load(path, weights="none", model=model)
    dist = distributed.join(run.config, resuming=path)  # on as many processes as it started with
    if run.finished:
        raise CnnlabError(f"{path} already finished its {run.config.epochs} epochs; start a new run with --out to train more.")
    derived = run.provenance.get("derived") or {}
    if derived.get("method") == "distill" or (derived.get("method") == "prune" and not derived.get("structured")):
        # this loop alone would train on without the teacher's outputs or the pruning masks
        raise CnnlabError(f"{path} was fine-tuned by `cnnlab compress` ({derived['method']}), which this resume cannot "
                          f"repeat; start it again: `cnnlab compress {derived['parent']} --out {path} --overwrite ...`.")
    data = run.load_data()  # refused if it is not the data the run started on
    for stale in path.glob(".*.tmp-*") if dist.is_main else ():  # half-written by a kill; the complete files are intact
        stale.unlink()
    state = load_state(checkpoint, run) if checkpoint.exists() else None  # rank 0's state is every rank's
    run.provenance.setdefault("resumed", []).append(now())
    if dist.is_main:
        run.save_provenance()
    fit(run, data, state, quiet=quiet)
    return run
