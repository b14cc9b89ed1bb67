"""The trainer state of a run, for an exact resume.

A plain `torch.save` of tensors, numbers and dicts (optimizer, schedule, RNG states,
position), written atomically and read back with `weights_only=True`: never unpickled.
Read back for a run, it is checked against that run before anything is restored, so a
damaged checkpoint, or one from another run, is one sentence: not a traceback deep in the
loop, not a metrics.jsonl grown with NUL bytes, not a run that "finishes" at once.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write, check_state

if TYPE_CHECKING:
    from cnnlab.run import Run
    from cnnlab.training.parts import Parts, Position


def save_state(state: dict[str, Any], path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: Path, run: Run | None = None) -> dict[str, Any]:
    """Trainer state written by `save_state`; never unpickles arbitrary objects. Its structure
    is checked, and with `run` that it can continue that run (`run_problem`)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CnnlabError(f"{path} does not exist: this run has no checkpoint to resume from.") from None
    except Exception as e:
        raise CnnlabError(f"checkpoint {path} cannot be read safely ({type(e).__name__}).") from None
    problem = structure_problem(state)
    if problem is None and run is not None:
        check_state(run.model.state_dict(), state["model"], f"checkpoint {path}")
        problem = run_problem(state, run)
    if problem:
        raise CnnlabError(f"checkpoint {path} is damaged or from another run: {problem}; "
                          "it cannot continue this run (start it again with --overwrite).")
    return state


def structure_problem(state: object) -> str | None:
    """What `checkpoint_state` writes: the position's counts and finite sums, tensors for the
    weights, generator states for the RNGs, a byte count for metrics.jsonl."""
    from cnnlab.training.parts import Position

    if not isinstance(state, dict):
        return f"it holds a {type(state).__name__}, not a trainer state"
    missing = [k for k in ("position", "model", "torch_rng", "metrics_bytes", "optimizer", "schedule", "augment_rng")
               if k not in state]
    if missing:
        return f"it has no {', '.join(missing)}"
    pos, names = state["position"], {f.name for f in fields(Position)}
    if not isinstance(pos, dict) or set(pos) != names:
        return f"its position is not a record of {', '.join(sorted(names))}"
    counts = ("epoch", "batch", "step", "seen", "best_epoch")
    if not all(_integer(pos[k]) and pos[k] >= 0 for k in counts):
        return f"its position's {', '.join(counts)} are not all counts"
    sums_ok = (all(_finite(pos[k]) and pos[k] >= 0 for k in ("loss_sum", "train_seconds"))
               and isinstance(pos["sums"], list) and all(_finite(v) for v in pos["sums"])
               and _number(pos["best_score"]) and not math.isnan(pos["best_score"]))  # -inf before the first epoch
    if not sums_ok:
        return "its position's sums are not finite numbers"
    if pos["best_epoch"] > pos["epoch"] or (pos["batch"] == 0) != (pos["seen"] == 0):
        return "its position contradicts itself (a best epoch after the current one, or images seen in no batch)"
    if not (isinstance(state["model"], dict) and all(torch.is_tensor(v) for v in state["model"].values())):
        return "its model is not a table of tensors"
    rng = torch.get_rng_state()
    for key in ("torch_rng", "augment_rng"):
        t = state[key]
        if not (torch.is_tensor(t) and t.dtype == rng.dtype and t.shape == rng.shape):
            return f"its {key} is not a random generator's state"
    if not (_integer(state["metrics_bytes"]) and state["metrics_bytes"] >= 0):
        return "its metrics_bytes is not a byte count"
    return None


def run_problem(state: dict[str, Any], run: Run) -> str | None:
    """No more epochs done than config.toml asks for, and metrics.jsonl at least as long as
    when the checkpoint was saved, its first `metrics_bytes` whole lines with one record per
    epoch done (what the resume keeps of it)."""
    from cnnlab.run import METRICS

    epoch, n = state["position"]["epoch"], state["metrics_bytes"]
    if epoch > run.config.epochs:
        return f"it is at epoch {epoch} of a run of {run.config.epochs} epochs"
    file = run.path / METRICS
    written = file.read_bytes() if file.is_file() else b""
    if n > len(written):
        return f"it counts {n:,} bytes of {METRICS}, which holds {len(written):,}"
    kept = written[:n]
    if kept and not kept.endswith(b"\n"):
        return f"its {n:,} bytes of {METRICS} end inside a line"
    done = sum(_event(line) == "epoch" for line in kept.splitlines())
    if done != epoch:
        return f"it is at epoch {epoch} but the part of {METRICS} it keeps records {done} finished epoch(s)"
    return None


def _event(line: bytes) -> object:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record.get("event") if isinstance(record, dict) else None


def _integer(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v: object) -> bool:
    return _number(v) and math.isfinite(v)  # type: ignore[arg-type]


# -- what only the built parts can check, when a checkpoint is restored into them (parts.restore) --
def position_problem(parts: Parts, pos: Position) -> str | None:
    """A position that is not one of this run's steps, or sums of another task."""
    if pos.batch > parts.steps_per_epoch or pos.step != pos.epoch * parts.steps_per_epoch + pos.batch:
        return (f"its position (epoch {pos.epoch}, batch {pos.batch}, step {pos.step}) is not one of a run of "
                f"{parts.steps_per_epoch} steps per epoch")
    if len(pos.sums) != parts.task.sum_count:
        return f"its position holds {len(pos.sums)} sum(s), the {parts.task.name} task {parts.task.sum_count}"
    return None


def optimizer_problem(made: dict[str, Any], saved: dict[str, Any], loaded: torch.optim.Optimizer) -> str | None:
    """The saved optimizer is the one config.toml makes (the same hyperparameters in each group;
    the schedule sets the learning rate), and each parameter's state (momentum, Adam's moments)
    has the parameter's shape."""
    for group, made_group in zip(saved["param_groups"], made["param_groups"], strict=True):  # counts: torch checked
        if not isinstance(group, dict) or set(group) != set(made_group):
            return "its optimizer is not the one config.toml asks for"
        lr = group["lr"]
        if not (isinstance(lr, float) and math.isfinite(lr) and lr >= 0):
            return f"its optimizer's learning rate is {lr!r}"
        if any(not same(group[k], v) for k, v in made_group.items() if k not in ("lr", "params")):
            return "its optimizer is not the one config.toml asks for (another momentum, weight decay or kind)"
    for group in loaded.param_groups:
        for p in group["params"]:
            for key, value in loaded.state.get(p, {}).items():
                if torch.is_tensor(value) and value.ndim and value.shape != p.shape:
                    return f"its optimizer's {key} is {tuple(value.shape)} for a parameter of {tuple(p.shape)}"
    return None


def same(a: object, b: object) -> bool:
    """a == b for plain values of the same type; a tensor, or values that do not compare, are not."""
    try:
        return type(a) is type(b) and not torch.is_tensor(a) and bool(a == b)
    except (RuntimeError, TypeError, ValueError):  # lists holding tensors
        return False


def schedule_problem(made: dict[str, Any], saved: object, pos: Position) -> str | None:
    """The saved schedule is the one config.toml makes (the same totals, phases, milestones),
    at the checkpoint's step: it steps once per optimizer step."""
    counters = {"last_epoch", "_step_count", "_last_lr", "_is_initial", "_get_lr_called_within_step"}
    if not isinstance(saved, dict) or set(saved) != set(made):
        return "its schedule is not the one config.toml asks for"
    if any(not same(saved[k], v) for k, v in made.items() if k not in counters):
        return "its schedule is not the one config.toml asks for (another length, rate or kind)"
    lrs = saved["_last_lr"]
    if not (same(saved["last_epoch"], pos.step) and same(saved["_step_count"], pos.step + 1)):
        return f"its schedule is at step {saved['last_epoch']!r}, its position at step {pos.step}"
    flags = [v for k, v in saved.items() if k in ("_is_initial", "_get_lr_called_within_step")]
    if not (all(isinstance(v, bool) for v in flags) and isinstance(lrs, list) and len(lrs) == len(made["_last_lr"])
            and all(isinstance(v, float) and math.isfinite(v) for v in lrs)):
        return "its schedule's learning rates are not finite numbers"
    return None
