"""A Run: the directory that is the single source of truth of one training.

    runs/NAME/
      config.toml        every hyperparameter chosen (TrainConfig)
      provenance.json    data (name, source, licence, classes, SHA-256), seed, versions, times
      model.safetensors  learned parameters at the end of the last finished epoch
      best.safetensors   learned parameters of the epoch with the best validation accuracy
      checkpoint.pt      trainer state for an exact resume (optimizer, schedule, RNG, step)
      metrics.jsonl      one JSON line per epoch, then the test result
      evaluation/, figures/*.png, report.html   written by `cnnlab evaluate` / `report`
      predict/           pictures of `cnnlab predict` (boxes, masks)
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write_text, check_fit, file_sha256, load_weights, read_weights, weights_shapes

if TYPE_CHECKING:
    from cnnlab.config import TrainConfig
    from cnnlab.data import Dataset, Split
    from cnnlab.tasks import Task
    from cnnlab.tasks.classify import Evaluation

CONFIG, PROVENANCE, WEIGHTS, BEST, CHECKPOINT, METRICS = (
    "config.toml", "provenance.json", "model.safetensors", "best.safetensors", "checkpoint.pt", "metrics.jsonl",
)
PREDICT = "predict"  # the folder of `cnnlab predict`'s pictures, unless it is given another
# A model with more parameters (4 GB of float32) is refused before it is built: the largest
# registered model at its paper's input (VGG-16 on 3x224x224) has 138 million.
MAX_PARAMETERS = 1_000_000_000


class Run:
    def __init__(self, path: Path, config: TrainConfig, provenance: dict[str, Any], model: nn.Module) -> None:
        self.path = path
        self.config = config
        self.provenance = provenance
        self.model = model  # a plain nn.Module taking pixels (N, C, H, W) in [0, 1] (clips: (N, T, C, H, W))

    # -- what the model expects ---------------------------------------------------------
    @property
    def classes(self) -> list[str]:
        return list(self.provenance["data"]["classes"])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W) of the images it takes, or (T, C, H, W) of its clips."""
        return tuple(int(v) for v in self.provenance["data"]["input_shape"])

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def task(self) -> Task:
        """What the run learned (cnnlab.tasks); runs that predate tasks classified."""
        from cnnlab.tasks import get_task

        return get_task(self.provenance.get("task", "classify"), self.classes).bind(self.model)

    def require_classifier(self, what: str) -> None:
        """One sentence when `what` (an analysis of class labels and probabilities) is asked of a
        run that learned another task."""
        task = self.provenance.get("task", "classify")
        if task != "classify":
            raise CnnlabError(f"{what} applies to classification runs only, and run {self.name} learned the {task} task.")

    def require_images(self, what: str) -> None:
        """One sentence when `what` (an analysis of single images) is asked of a run whose model
        takes clips (T, C, H, W)."""
        if len(self.input_shape) != 3:
            raise CnnlabError(f"{what} applies to models of images, and run {self.name} takes clips of "
                              f"{'x'.join(map(str, self.input_shape))} (frames first).")

    # -- creating and opening -------------------------------------------------------------
    @classmethod
    def create(
        cls, path: str | Path, config: TrainConfig, provenance: dict[str, Any], model: nn.Module,
        overwrite: bool = False,
    ) -> Run:
        """Make the run directory and write config.toml and provenance.json.

        An existing run is never touched unless `overwrite`: it may be hours of training.
        """
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            if not overwrite:
                raise CnnlabError(
                    f"{path} already holds files; continue that run with `cnnlab train --resume {path}`, "
                    "or choose another --out (or --overwrite to replace it)."
                )
            if not (path / CONFIG).is_file():
                raise CnnlabError(f"{path} is not a cnnlab run, so --overwrite will not delete it; choose another --out.")
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path, config, provenance, model)
        atomic_write_text(path / CONFIG, config.to_toml())
        run.save_provenance()
        return run

    @classmethod
    def load(cls, path: str | Path, weights: str = "model", model: nn.Module | None = None) -> Run:
        """Open a run: rebuild its model from config.toml and load `weights` ('model' = last
        epoch, 'best' = best validation epoch, 'none' = untrained, for a resume). Pass `model`
        for a run that trained your own nn.Module (cnnlab cannot rebuild it by name).

        Every file is checked before it is used, each problem one sentence naming the file:
        config.toml's values, provenance.json's fields and input shape, and the weights: their
        SHA-256 when provenance.json recorded it (a finished run), their shapes before any
        memory is given to the model, their types and finiteness."""
        from cnnlab.config import TrainConfig

        path = Path(path)
        if weights not in ("model", "best", "none"):
            raise CnnlabError(f"weights must be 'model', 'best' or 'none', got '{weights}'.")
        if not (path / CONFIG).is_file():
            raise CnnlabError(f"{path} is not a cnnlab run (no {CONFIG}); train one with `cnnlab train --out {path}`.")
        config = TrainConfig.from_toml(path / CONFIG)
        config.check(origin=str(path / CONFIG))
        provenance = read_provenance(path / PROVENANCE)
        file = None if weights == "none" else path / (WEIGHTS if weights == "model" else BEST)
        if file is not None and not file.is_file():
            raise CnnlabError(
                f"{path} has no {file.name} yet (no epoch finished); resume it with `cnnlab train --resume {path}`."
            )
        if model is None:
            model = build_checked(path, config, provenance, file)
        elif config.dp:  # trained with DP-SGD: the same BatchNorm -> GroupNorm swap as at training
            from cnnlab.models.private import dp_ready

            model = dp_ready(model)
        run = cls(path, config, provenance, model)
        if file is not None:
            state, _ = read_weights(file)
            run.check_recorded_hash(file)
            load_weights(model, state, str(file))
        model.eval()
        return run

    # -- records ----------------------------------------------------------------------------
    def save_provenance(self) -> None:
        atomic_write_text(self.path / PROVENANCE, json.dumps(self.provenance, indent=2) + "\n")

    def record_weights(self) -> None:
        """provenance['weights']: {file name: SHA-256} of the final weights files, what
        `cnnlab verify` re-hashes."""
        self.provenance["weights"] = {
            name: file_sha256(self.path / name) for name in (WEIGHTS, BEST) if (self.path / name).is_file()
        }
        self.save_provenance()

    def weights_metadata(self) -> dict[str, Any]:
        """Stored inside each .safetensors so the file alone says what it is."""
        return {"model": self.config.model, "input_shape": list(self.input_shape), "classes": self.classes}

    def check_recorded_hash(self, file: Path) -> None:
        """Refuse a weights file whose SHA-256 is not the one provenance.json recorded for it
        (a flipped byte, a file replaced since training); a run without records passes."""
        recorded = self.provenance.get("weights", {}).get(file.name)
        if recorded is not None and file_sha256(file) != recorded:
            raise CnnlabError(
                f"{file} is not the file this run saved: its SHA-256 differs from the one in {PROVENANCE}; "
                f"restore it or train again (`cnnlab verify {self.path}` lists what differs)."
            )

    def metrics(self) -> list[dict[str, Any]]:
        """The records of metrics.jsonl. Lines are appended in place, so a kill mid-append can
        leave the last line cut short: it is dropped with a warning. Any other line that is not
        a record is an error naming the file and the line."""
        return read_metrics(self.path / METRICS)

    def log(self, record: dict[str, Any]) -> None:
        with open(self.path / METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")

    @property
    def finished(self) -> bool:
        return self.provenance.get("finished") is not None

    # -- using the model --------------------------------------------------------------------
    def load_data(self, download: bool | None = None, check: bool = True) -> Dataset:
        """The dataset this run trained on, loaded again by its name; with `check`, refused when
        its SHA-256 differs from provenance.json (data handed in as a Dataset, permuted, subset,
        or files changed since), so no analysis silently reads other data than the run learned from."""
        from cnnlab.data import load_data

        data = load_data(self.config.data, **self.config.data_options(), download=download)
        recorded = self.provenance["data"].get("sha256")
        if check and recorded and data.sha256() != recorded:
            raise CnnlabError(
                f"run {self.name} trained on data that '{self.config.data}' no longer gives (SHA-256 differs: "
                "it was handed in as a Dataset, or the files changed); pass that data explicitly (Python: data=...)."
            )
        return data

    def check_fits(self, input_shape: tuple[int, ...], num_classes: int | None, what: str) -> None:
        """A clear sentence when data does not fit the model (channels, size or classes)."""
        if tuple(input_shape) != self.input_shape:
            fmt = lambda s: "x".join(map(str, s))  # noqa: E731
            raise CnnlabError(
                f"{what} has images of shape {fmt(input_shape)} but run {self.name} expects {fmt(self.input_shape)}."
            )
        if num_classes is not None and num_classes != len(self.classes):
            raise CnnlabError(f"{what} has {num_classes} classes but run {self.name} predicts {len(self.classes)}.")

    def split(self, data: Dataset | None = None, split: str = "test") -> Split:
        """A non-empty split of the run's own dataset (or of `data`, which must fit the model)."""
        data = data if data is not None else self.load_data()
        self.check_fits(data.input_shape, data.num_classes, f"dataset {data.name}")
        if split not in data.splits():
            raise CnnlabError(f"split must be one of {', '.join(data.splits())}, got '{split}'.")
        part = data.splits()[split]
        if len(part) == 0:
            raise CnnlabError(f"the {split} split of {data.name} is empty.")
        return part

    def evaluate(self, data: Dataset | None = None, split: str = "test") -> Evaluation:
        """A classifier's evaluation on a split of the run's own dataset (or of `data`, which must
        fit): accuracy, per-class scores, confusion. Every task's numbers: `scores`."""
        from cnnlab.tasks.classify import evaluate

        if self.task.name != "classify":
            raise CnnlabError(f"run {self.name} learned the {self.task.name} task; its numbers come from Run.scores().")
        part = self.split(data, split)
        return evaluate(self.model, part.x, part.y, self.classes, tta=self.config.tta)

    def scores(self, data: Dataset | None = None, split: str = "test") -> dict[str, Any]:
        """The task's metrics (loss included) on a split of the run's own dataset (or of `data`)."""
        return self.task.evaluate(self.model, self.split(data, split), tta=self.config.tta)

    def predict(self, x: Tensor) -> Tensor:
        """Class probabilities (N, K) for pixels x (N, C, H, W) in [0, 1]."""
        from cnnlab.tasks.classify import predict_logits

        if x.ndim == 3:
            x = x.unsqueeze(0)
        self.check_fits(tuple(x.shape[1:]), None, "the input")
        return predict_logits(self.model, x.float(), tta=self.config.tta, classes=self.classes).softmax(1)

    def predict_files(self, paths: list[str | Path], k: int = 3, out: str | Path | None = None) -> list[dict[str, Any]]:
        """Predictions for image files (video files for a model of clips), each converted to the
        run's input: a classifier's top-k classes with probabilities; for the other tasks what
        `Task.predictions` tells (a detector's boxes, a segmenter's masks, in each file's own
        pixels; a clip's classes) with the pictures written into `out` (default RUN/predict/),
        named after the files."""
        from cnnlab.data.coco import file_size
        from cnnlab.data.images import read_image
        from cnnlab.data.videofolder import DISPLAY_SIDE, read_clip

        *frames, c, h, w = self.input_shape
        if frames:  # a model of clips: video files, read as videofolder reads them
            x = torch.stack([read_clip(p, frames[0], (h, w), c) for p in paths])
        else:
            x = torch.stack([read_image(p, c, (h, w)) for p in paths])
        task = self.task
        if task.name != "classify":
            images = ([read_clip(p, frames[0], None, max_side=DISPLAY_SIDE) for p in paths] if frames
                      else [read_image(p, 3, file_size(Path(p))) for p in paths])
            outputs = task.outputs(self.model, x, tta=self.config.tta)
            found = task.predictions(outputs, (h, w), images, picture_names(paths), Path(out or self.path / PREDICT))
            return [{"image": str(p), **f} for p, f in zip(paths, found, strict=True)]
        probs = self.predict(x)
        top = probs.topk(min(k, probs.shape[1]), dim=1)
        return [
            {"image": str(p), "top": [{"class": self.classes[i], "probability": v} for v, i in zip(vals.tolist(), idx.tolist())]}
            for p, vals, idx in zip(paths, top.values, top.indices)
        ]

    # -- results of analyses ----------------------------------------------------------------
    def test_result(self) -> dict[str, Any] | None:
        """The last `"event": "test"` record of metrics.jsonl (the test accuracy and loss that
        training measured at its end), or None while the run has not finished."""
        return next((m for m in reversed(self.metrics()) if m.get("event") == "test"), None)

    def result_file(self, kind: str) -> Path:
        """Where a result of `kind` lives: 'audit/bias' -> RUN/audit/bias.json."""
        parts = kind.split("/")
        if any(part in ("", ".", "..") for part in parts) or "\\" in kind:
            raise CnnlabError(f"a result kind is a relative name inside the run, like 'audit/bias'; got '{kind}'.")
        return self.path.joinpath(*parts[:-1], parts[-1] + ".json")

    def results(self, kind: str) -> dict[str, Any] | None:
        """What an analysis saved as `kind` (see `save_result`), or None if it was never saved."""
        file = self.result_file(kind)
        return json.loads(file.read_text()) if file.is_file() else None

    def save_result(self, kind: str, result: dict[str, Any]) -> Path:
        """Write `result` as RUN/<kind>.json (atomically: a reader never sees half a file)."""
        file = self.result_file(kind)
        file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(file, json.dumps(result, indent=2) + "\n")
        return file


def picture_names(paths: list[str | Path]) -> list[str]:
    """A name for the pictures of each image file: its stem, with -2, -3... after a stem seen before."""
    names: list[str] = []
    for p in paths:
        name, stem, i = Path(p).stem, Path(p).stem, 1
        while name in names:
            i += 1
            name = f"{stem}-{i}"
        names.append(name)
    return names


# -- reading a run's records ------------------------------------------------------------------
def build_checked(path: Path, config: TrainConfig, provenance: dict[str, Any], weights: Path | None) -> nn.Module:
    """The untrained model config.toml and provenance.json describe, built once it is known to
    fit: a registered model that does the recorded task, whose shapes (found on the meta device,
    without memory) are those of the `weights` file, or without one, of at most MAX_PARAMETERS."""
    from cnnlab.models.registry import get_entry

    if config.model.startswith("custom:"):
        raise CnnlabError(f"{path} trained a custom module ({config.model[7:]}); pass an instance: Run.load(path, model=...).")
    task, tasks = provenance.get("task", "classify"), get_entry(config.model).tasks
    if task not in tasks:
        raise CnnlabError(
            f"{path / PROVENANCE} says the run learned the {task} task, which {config.model} does not do "
            f"({', '.join(tasks)}); restore the file from a copy or train the run again."
        )
    with torch.device("meta"):
        skeleton = _build(config, provenance["data"], provenance.get("derived"))
    if weights is not None:
        check_fit(skeleton.state_dict(), weights_shapes(weights), f"{weights} (for the model {PROVENANCE} describes)")
    elif (n := sum(p.numel() for p in skeleton.parameters())) > MAX_PARAMETERS:
        shape = "x".join(map(str, provenance["data"]["input_shape"]))
        raise CnnlabError(f"{path / PROVENANCE} describes a {config.model} of {n:,} parameters for input {shape}, "
                          f"more than {MAX_PARAMETERS:,}; restore the file from a copy.")
    return _build(config, provenance["data"], provenance.get("derived"))


def _build(config: TrainConfig, data: dict[str, Any], derived: dict[str, Any] | None = None) -> nn.Module:
    """The model config.toml and provenance.json describe, untrained (on the current device);
    a derived one (pruned, int8, a tree: cnnlab.models.derived) rebuilt from its description."""
    from cnnlab.models import build_model
    from cnnlab.models.derived import rebuild

    def base(num_classes: int) -> nn.Module:
        return build_model(config.model, data["input_shape"], num_classes, data["mean"], data["std"])

    model = base(len(data["classes"])) if derived is None else rebuild(derived, base, len(data["classes"]))
    if config.dp:  # trained with DP-SGD: the same BatchNorm -> GroupNorm swap as at training
        from cnnlab.models.private import dp_ready

        model = dp_ready(model)
    return model


def read_provenance(file: Path) -> dict[str, Any]:
    """provenance.json, checked: every field cnnlab reads has its type, and the input shape is
    one a model can be built for. One sentence naming the file otherwise."""
    try:
        doc = json.loads(file.read_text())
    except FileNotFoundError:
        raise CnnlabError(f"{file} is missing; this run cannot say what it trained on.") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise CnnlabError(f"{file} is not valid JSON ({e}); restore it from a copy or train the run again.") from None
    problem = provenance_problem(doc)
    if problem:
        raise CnnlabError(f"{file} is damaged: {problem}; restore it from a copy or train the run again.")
    return doc


def provenance_problem(doc: object) -> str | None:
    """What is wrong with a provenance record, or None. Only what cnnlab reads is checked."""
    from cnnlab.data.images import check_input_shape

    def number(v: object) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    def str_map(v: object) -> bool:
        return isinstance(v, dict) and all(isinstance(x, str) for x in v.values())

    if not isinstance(doc, dict):
        return f"it holds a JSON {type(doc).__name__}, not an object"
    data = doc.get("data")
    if not isinstance(data, dict):
        return "it has no 'data' object"
    classes = data.get("classes")
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        return "data.classes is not a list of class names"
    try:
        c = check_input_shape(data.get("input_shape"), "data.input_shape")[-3]  # images (C, H, W), clips (T, C, H, W)
    except CnnlabError as e:
        return str(e).rstrip(".")
    for key in ("mean", "std"):
        values = data.get(key)
        if not (isinstance(values, list) and len(values) == c and all(number(v) for v in values)):
            return f"data.{key} is not a list of {c} finite numbers, one per channel"
    if not all(v > 0 for v in data["std"]):
        return "data.std holds a value that is not above 0"
    if not isinstance(data.get("name"), str):
        return "data.name is not a string"
    sizes = data.get("sizes", {})
    if not (isinstance(sizes, dict) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in sizes.values())):
        return "data.sizes is not a table of image counts"
    if not str_map(data.get("sha256", {})):
        return "data.sha256 is not a table of SHA-256 strings"
    if not isinstance(data.get("meta", {}), dict):
        return "data.meta is not an object"
    if not isinstance(doc.get("task", "classify"), str):
        return "task is not a string"
    if not isinstance(doc.get("finished"), (str, type(None))):
        return "finished is not a time"
    if not str_map(doc.get("weights", {})):
        return "weights is not a table of SHA-256 strings"
    if "derived" in doc:  # a model derived from another run's (cnnlab.models.derived)
        from cnnlab.models.derived import derived_problem

        if problem := derived_problem(doc["derived"], len(classes)):
            return problem
    privacy = doc.get("privacy")
    if privacy is not None and not (isinstance(privacy, dict) and number(privacy.get("epsilon"))
                                    and number(privacy.get("delta")) and isinstance(privacy.get("caveat"), str)):
        return "privacy does not hold epsilon, delta and its caveat"
    return None


def read_metrics(file: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl (see `Run.metrics`); [] when there is none."""
    try:
        text = file.read_text()
    except FileNotFoundError:
        return []
    except UnicodeDecodeError:
        raise CnnlabError(f"{file} is not text (JSON lines); restore it from a copy or train the run again.") from None
    lines = text.split("\n")  # a complete file ends with a newline: its last piece is ""
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict) and not record_problem(record):
            records.append(record)
        elif number == len(lines):  # no newline after it: an append the kill cut short
            warnings.warn(f"{file}: its last line was cut short (a training stopped while writing it); dropped it.",
                          stacklevel=2)
        else:
            why = record_problem(record) if isinstance(record, dict) else "not a JSON record"
            raise CnnlabError(f"{file} line {number} is {why}; restore the file from a copy or train the run again.")
    return records


def record_problem(record: dict[str, Any]) -> str | None:
    """What is wrong with one metrics record, for the fields reports and cards read."""
    if not isinstance(record.get("event", ""), str):
        return "a record whose event is not a name"
    for key, value in record.items():
        if key in ("epoch", "step", "best_epoch") and not (isinstance(value, int) and not isinstance(value, bool)):
            return f"a record whose {key} is not an integer"
        if key.endswith(("_loss", "_acc")) and not (isinstance(value, (int, float)) and not isinstance(value, bool)):
            return f"a record whose {key} is not a number"
    return None
