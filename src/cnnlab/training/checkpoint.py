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
