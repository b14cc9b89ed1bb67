"""Runs by name: the run the server was started on, and its siblings in the same folder.

`cnnlab serve runs/lenet` answers for `lenet` by default and for `runs/other` when a request
says `?run=other`, so the lab page works on any run a user trained. A name is a folder name,
never a path: `../`, `/etc` or a link that leads out of the folder is an unknown run, not a
file to open.

A run is checked when it is opened, before any request uses it: Run.load's checks of its files
(finite weights of the right types, the recorded hash, a sound provenance.json and
metrics.jsonl), an input no larger than a server holds, a forward pass that gives one score
per class. Then each run is served by two copies of its model:

- `run.model` answers `/api/predict` through a micro-batcher, lock-free: nothing ever hooks it;
- `analysis`, a copy, takes Grad-CAM's and the explorer's hooks and the attacks' gradients,
  one request at a time under `lock`: a hook sees every forward pass through its model, so a
  prediction passing through a hooked model would corrupt the explanation being recorded.
  The lock also keeps the analyses to one core, so predictions always have the other.
"""

from __future__ import annotations

import copy
import json
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cnnlab.errors import CnnlabError
from cnnlab.run import CONFIG, PROVENANCE, WEIGHTS, Run
from cnnlab.serve.answers import ServeError
from cnnlab.serve.batching import MicroBatcher

MAX_INPUT_SIDE = 512  # the largest input of a model here is 224x224; a batch of 64 at 512x512 RGB is 200 MB
MAX_OPEN_RUNS = 8  # sibling runs kept open at once (each holds two copies of its model); the least used is closed


def unknown_run(name: str, known: list[str]) -> ServeError:
    return ServeError(f"unknown run '{name}'; runs here: {', '.join(known) or 'none'}.", 404)


# The endpoint that answers each task's images: where a run of the wrong task is sent.
ENDPOINTS = {"classify": "/api/predict", "detect": "/api/detect", "segment": "/api/segment", "pose": "/api/pose"}


@dataclass
class Served:
    """One run as the server holds it."""

    run: Run
    task: str  # the run's task name: predict, explain and attack answer for "classify" only
    analysis: nn.Module
    lock: threading.Lock = field(default_factory=threading.Lock)
    forward_seconds: float = 0.0  # one pass on one image, timed at opening: what requests' costs are estimated from
    test_accuracy: float | None = None  # what training measured at its end (metrics.jsonl)
    description: dict[str, Any] | None = None  # /api/model's answer, made on first request
    _predictor: MicroBatcher | None = None

    @property
    def name(self) -> str:
        return self.run.name

    def require_classifier(self, what: str) -> None:
        if self.task != "classify":
            other = ENDPOINTS.get(self.task) if what == ENDPOINTS["classify"] else None
            send = f"; send its images to {other}" if other else ""
            raise ServeError(f"run {self.name} learned the {self.task} task; {what} answers for classification runs only{send}.")

    @property
    def predictor(self) -> MicroBatcher[tuple[list[float], list[int]]]:
        """Probabilities and the classes ordered from most to least likely, per input."""
        if self._predictor is None:
            self._predictor = MicroBatcher(_ranked(self.run.model, self.run.config.tta, self.run.classes))
        return self._predictor

    def probabilities(self, x: Tensor) -> Tensor:
        """(K,) class probabilities of x (1, C, H, W) by the analysis copy (hold `lock`)."""
        from cnnlab.tasks.classify import predict_logits

        return predict_logits(self.analysis, x, tta=self.run.config.tta, classes=self.run.classes).softmax(1)[0]

    def close(self) -> None:
        if self._predictor is not None:
            self._predictor.close()


def _ranked(model: nn.Module, tta: bool, classes: list[str]):  # noqa: ANN202
    from cnnlab.tasks.classify import predict_logits

    def forward(x: Tensor) -> list[tuple[list[float], list[int]]]:
        probs = predict_logits(model, x, tta=tta, classes=classes).softmax(1)
        return list(zip(probs.tolist(), probs.argsort(1, descending=True).tolist()))

    return forward


def open_run(path: Path) -> Served:
    """Open and check the run at `path`; every problem is one CnnlabError naming the file."""
    _check_declared_shape(path)
    try:
        run = Run.load(path)  # checks config.toml, provenance.json and the weights (types, finite, hash)
        task = run.task.name
        test = run.test_result() or {}  # metrics.jsonl: a cut last line is dropped, garbage is a sentence
    except CnnlabError:
        raise
    except Exception as e:  # noqa: BLE001  Run.load's checks are the place for sentences; this is the net under them
        raise CnnlabError(
            f"run {path.name} cannot be opened: one of its files is damaged ({type(e).__name__}); "
            f"`cnnlab verify {path.name}` checks them."
        ) from None
    c = run.input_shape[-3]  # images (C, H, W), clips (T, C, H, W)
    if c not in (1, 3):
        raise CnnlabError(f"run {run.name} takes {c}-channel input; the server reads images as 1 (gray) or 3 (RGB) channels.")
    x = torch.zeros(1, *run.input_shape)
    seconds = math.inf
    with torch.inference_mode():
        for _ in range(3):  # the first pass pays one-off costs (allocations, kernel choice): keep the fastest
            start = time.perf_counter()
            out = run.model(x)
            seconds = min(seconds, time.perf_counter() - start)
    if task == "classify" and (not isinstance(out, Tensor) or tuple(out.shape) != (1, len(run.classes))):
        raise CnnlabError(f"run {run.name}'s model does not give one score per class for its {len(run.classes)} classes.")
    return Served(run, task, analysis=copy.deepcopy(run.model), forward_seconds=seconds, test_accuracy=test.get("test_acc"))


def _check_declared_shape(path: Path) -> None:
    """Refuse an input larger than a server holds before the model is built for it: Run.load
    accepts up to a billion parameters, which a shared server must not allocate on a request."""
    try:
        *_, h, w = json.loads((path / PROVENANCE).read_text())["data"]["input_shape"]
        too_large = int(h) > MAX_INPUT_SIDE or int(w) > MAX_INPUT_SIDE
    except Exception:  # noqa: BLE001  whatever else is wrong with the file, Run.load names it
        return
    if too_large:
        raise CnnlabError(
            f"run {path.name}'s {PROVENANCE} declares input {h}x{w}; the server takes at most {MAX_INPUT_SIDE}x{MAX_INPUT_SIDE}."
        )


class RunStore:
    """The served run and the sibling runs opened so far (at most MAX_OPEN_RUNS)."""

    def __init__(self, run_dir: str | Path) -> None:
        path = Path(run_dir)
        self.default = open_run(path)  # a bad run stops `cnnlab serve` at once, with its sentence
        self.root = path.resolve().parent
        self._open: OrderedDict[str, Served] = OrderedDict({self.default.name: self.default})
        self._guard = threading.Lock()

    def names(self) -> list[str]:
        """The runs here: folders of the served folder with a config and weights."""
        return sorted(p.name for p in self.root.iterdir() if self._inside(p) and (p / CONFIG).is_file() and (p / WEIGHTS).is_file())

    def _inside(self, p: Path) -> bool:
        return not p.name.startswith(".") and p.resolve().parent == self.root

    def get(self, name: str | None) -> Served:
        if not name or name == self.default.name:
            return self.default
        with self._guard:
            if name in self._open:
                self._open.move_to_end(name)
                return self._open[name]
            if "/" in name or "\\" in name or "\0" in name or name not in self.names():
                raise unknown_run(name, self.names())
            try:
                served = open_run(self.root / name)
            except CnnlabError as e:
                raise ServeError(f"run '{name}' cannot be served: {e}", 422) from None
            self._open[name] = served
            while len(self._open) > MAX_OPEN_RUNS:
                oldest = next(n for n in self._open if n != self.default.name)
                self._open.pop(oldest).close()
            return served

    def close(self) -> None:
        with self._guard:
            for served in self._open.values():
                served.close()
