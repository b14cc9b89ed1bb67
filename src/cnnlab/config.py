"""Every hyperparameter a training run chooses, in one dataclass.

The field names are the `cnnlab train` flags (`batch_size` <- `--batch-size`) and the keys of
`config.toml`, so a run's config file can be edited and handed back with `--config`. Each
field's metadata holds its flag's help (see `option`): the CLI builds `cnnlab train`'s flags
from these fields, so a new option is one new field here.
Precedence: these defaults < a `--config` file < flags given on the command line.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("onecycle", "cosine", "step", "none")
DEVICES = ("cpu", "cuda", "auto")
RECIPES = ("none", "fast")  # what each chooses: training/recipes.py
DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3}
# epoch_order seeds torch with seed * 1_000_003 + epoch, which must stay a 64-bit seed
SEEDS = 2**32
# a budget plans epochs (budget / seconds per epoch); beyond a year their count stops being a plan
MAX_BUDGET = 365 * 24 * 3600


def parse_budget(text: str) -> float:
    """'90s', '2m', '15m', '1h' or plain seconds -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    t = text.strip().lower()
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        value = -1
    if not 0 < value < math.inf:
        raise CnnlabError(f"--budget must be a time like 90s, 2m, 15m or 1h, got '{text}'.")
    return value


KINDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def of_type(value: object, want: type) -> bool:
    """`value` can be a field of type `want`: a bool only where true/false is wanted, an int also where a number is."""
    if isinstance(value, bool) != (want is bool):
        return False
    return isinstance(value, want) or (want is float and isinstance(value, int))


def option(default: Any, help: str, *, negatable: bool = False, parse: Callable[[str], Any] | None = None) -> Any:
    """A TrainConfig field and what its `cnnlab train` flag says.

    help: the flag's help line. negatable: a bool flag that also has a `--no-` form (for the
    choices a recipe can switch on). parse: the flag takes text, turned into the value by this.
    """
    return field(default=default, metadata={"help": help, "negatable": negatable, "parse": parse})


@dataclass(frozen=True)
class TrainConfig:
    model: str = option("lenet5", "Model name (see `cnnlab models`).")
    data: str = option("digits", "Dataset name, or imagefolder:PATH (see `cnnlab datasets`).")
    data_dir: str = option("", "Folder holding (or to receive) the dataset's files; it must exist "
                               "(default: the dataset's usual places, see `cnnlab datasets`).")
    val_fraction: float = option(0.1, "Share of training images held out for validation (to pick the best epoch).")
    image_size: int = option(0, "imagefolder: resize images to this side (0: the loader's default).")
    on_corrupt: str = option("skip", "imagefolder: skip an undecodable image (named) or error.")
    epochs: int = option(10, "Passes over the training images.")
    batch_size: int = option(128, "Images per optimizer step.")
    optimizer: str = option("sgd", "sgd (Nesterov), adam or adamw (yolo and ssd: adamw unless you choose).")
    lr: float = option(0.0, "Peak learning rate (default 0.05 for SGD, 1e-3 for Adam; yolo and ssd: 2e-3).")  # 0 = DEFAULT_LR
    momentum: float = option(0.9, "SGD momentum.")
    weight_decay: float = option(5e-4, "L2 penalty on weights (not biases or norms).")
    schedule: str = option("onecycle", "onecycle, cosine, step or none.")
    label_smoothing: float = option(0.0, "Label smoothing of the cross-entropy.")
    augment: str = option("none", "Batch augmentations: crop, flip, crop,flip or none.")
    seed: int = option(0, "Seed of the initial weights, batch order and augmentation.")
    device: str = option("cpu", "cpu, cuda or auto.")
    checkpoint_every: int = option(0, "Also checkpoint every N steps (0: at epoch ends).")
    keep_checkpoints: bool = option(False, "Keep every epoch's weights (for `cnnlab influence`).")
    adversarial: str = option("none", "Adversarial training: pgd (Madry et al.) or fgsm-rs (Wong et al.), with --eps.")
    eps: float = option(0.0, "L-inf radius of adversarial training, pixels in [0, 1].")
    adv_steps: int = option(7, "PGD steps per batch of adversarial training.")
    mitigate: str = option("none", "Group bias mitigation: reweight or groupdro.")
    dp: bool = option(False, "Train with DP-SGD (Opacus).")
    target_epsilon: float = option(8.0, "DP: epsilon spent by the end of training.")
    delta: float = option(1e-5, "DP: delta of (epsilon, delta)-DP.")
    max_grad_norm: float = option(1.0, "DP: per-sample gradient clipping norm.")
    recipe: str = option("none", "fast: cnnlab's time-to-accuracy choices for the options you do not set.")
    # seconds for the whole command, imports included
    budget: float = option(0.0, "Time for the whole command (90s, 2m, 15m): picks the epochs that fit, unless --epochs is given.",
                           parse=parse_budget)
    tta: bool = option(False, "Score with flip test-time augmentation (mean logits of the image and its mirror).", negatable=True)
    channels_last: bool = option(False, "NHWC memory layout (faster convolutions on CPUs and GPUs).", negatable=True)
    nproc: int = option(1, "Processes training together on this machine (DDP through torchrun); "
                           "--batch-size stays the global batch.")

    def check(self, origin: str = "your flags or config file") -> None:
        """One sentence for the first value no training can use; `origin` is where to look.
        A run's config.toml is checked again when the run is opened (Run.load)."""
        from cnnlab.data.batches import parse_augment
        from cnnlab.data.images import MAX_PIXELS

        for f in fields(self):
            value, want = getattr(self, f.name), type(f.default)
            if not of_type(value, want):  # a Python caller's TrainConfig(epochs="3")
                raise CnnlabError(f"{f.name.replace('_', ' ')} must be {KINDS[want]}, got {value!r} (check {origin}).")
            if isinstance(value, float) and not math.isfinite(value):
                raise CnnlabError(f"{f.name.replace('_', ' ')} must be a finite number, got {value} (check {origin}).")
            if isinstance(value, int) and not -(2**63) <= value < 2**63:  # torch counts in 64-bit integers
                raise CnnlabError(f"{f.name.replace('_', ' ')} must be below 2**63, got {value} (check {origin}).")
        checks = [
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}"),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}"),
            (self.on_corrupt in ("skip", "error"), "on corrupt must be skip or error"),
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size >= 2, "batch size must be at least 2"),
            (self.lr >= 0, "lr must be positive"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), e.g. 0.9; got {self.momentum}"),
            (self.weight_decay >= 0, "weight decay must be 0 or more"),
            (0 <= self.label_smoothing < 1, "label smoothing must be in [0, 1)"),
            (0 <= self.val_fraction < 1, "val fraction must be in [0, 1)"),
            (0 <= self.image_size and self.image_size**2 <= MAX_PIXELS,
             f"image size must be 0 (the loader's default) or a side of at most {math.isqrt(MAX_PIXELS)} pixels; "
             f"got {self.image_size}"),
            (0 <= self.seed < SEEDS, f"seed must be an integer from 0 to {SEEDS - 1}; got {self.seed}"),
            (self.checkpoint_every >= 0, "checkpoint every must be 0 or more steps"),
            (self.adversarial in ("none", "pgd", "fgsm-rs"), "adversarial must be none, pgd or fgsm-rs"),
            (0 <= self.eps <= 1, f"eps {self.eps} is outside [0, 1]: it is an L-inf radius in pixels in [0, 1]"),
            (self.adversarial == "none" or self.eps > 0,
             f"adversarial training ({self.adversarial}) needs --eps above 0, e.g. 0.1"),
            (self.adv_steps >= 1, "adv steps must be at least 1"),
            (self.mitigate in ("none", "reweight", "groupdro"), "mitigate must be none, reweight or groupdro"),
            (self.target_epsilon > 0, "target epsilon must be above 0, e.g. 8"),
            (0 < self.delta < 1, "delta must be in (0, 1), e.g. 1e-5 (below 1 / number of training images)"),
            (self.max_grad_norm > 0, "max grad norm must be above 0, e.g. 1.0"),
            (self.recipe in RECIPES, f"recipe must be one of {', '.join(RECIPES)}"),
            (0 <= self.budget <= MAX_BUDGET, "budget must be 0 (none) or a positive time of at most a year, e.g. 2m"),
            (not (self.dp and self.adversarial != "none"),
             "--dp and --adversarial cannot be combined (the privacy accounting assumes plain DP-SGD steps)"),
            (not (self.dp and self.mitigate != "none"),
             "--dp and --mitigate cannot be combined (group weights change each example's sensitivity)"),
            (self.nproc >= 1, "nproc must be at least 1 (processes training together)"),
            (not (self.dp and self.nproc > 1),
             "--dp trains in one process: Opacus' per-sample clipping with several processes (DDP) is not supported, "
             "drop --nproc"),
            (not (self.mitigate == "groupdro" and self.nproc > 1),
             "--mitigate groupdro trains in one process (its group weights follow each batch), drop --nproc"),
            (self.batch_size >= 2 * self.nproc,
             f"batch size {self.batch_size} is the global batch: with --nproc {self.nproc} it must be at least "
             f"{2 * self.nproc} (2 images per process)"),
        ]
        for ok, message in checks:
            if not ok:
                raise CnnlabError(f"{message} (check {origin}).")
        parse_augment(self.augment)

    def resolved(self) -> TrainConfig:
        """Fill the 'usual' values in and check every choice, and that this machine can run it
        (the device, the processes), so config.toml records what ran. Called before a run
        directory is created: a refused choice leaves nothing behind."""
        from cnnlab.data.batches import parse_augment

        self.check()
        self.check_machine()
        augment = ",".join(parse_augment(self.augment)) or "none"
        return replace(self, lr=self.lr or DEFAULT_LR[self.optimizer], augment=augment)

    def check_machine(self) -> None:
        """The device asked for exists, and --nproc does not ask for more processors than there are."""
        import torch

        cuda = self.device == "cuda" or (self.device == "auto" and torch.cuda.is_available())
        if self.device == "cuda" and not torch.cuda.is_available():
            raise CnnlabError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu or auto.")
        if cuda:
            have, unit = torch.cuda.device_count(), "CUDA GPU"
        else:
            have = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            unit = "CPU core"
        if self.nproc > have:
            raise CnnlabError(f"--nproc {self.nproc} starts one process per {unit} but this machine gives cnnlab "
                              f"{have} {unit}(s); use --nproc {have} or fewer.")

    def data_options(self) -> dict[str, Any]:
        """The keyword arguments of `cnnlab.data.load_data` this config chose."""
        return {"data_dir": self.data_dir or None, "val_fraction": self.val_fraction,
                "image_size": self.image_size or None, "on_corrupt": self.on_corrupt}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], origin: str = "config") -> TrainConfig:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise CnnlabError(
                f"{origin} has unknown key(s) {', '.join(unknown)}; known keys: {', '.join(known)}."
            )
        typed = {}
        for key, value in values.items():
            want = type(getattr(cls(), key))
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                try:
                    value = float(value)
                except OverflowError:
                    raise CnnlabError(f"{origin}: '{key}' is too large a number ({len(str(value))} digits).") from None
            if not of_type(value, want):
                raise CnnlabError(f"{origin}: '{key}' must be {KINDS[want]}, got {value!r}.")
            typed[key] = value
        return cls(**typed)

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            values = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise CnnlabError(f"config file {path} does not exist.") from None
        except ValueError as e:  # TOMLDecodeError, UnicodeDecodeError, or an integer of over 4,300 digits
            raise CnnlabError(f"config file {path} is not valid TOML: {e}.") from None
        return cls.from_dict(values, origin=str(path))

    def to_toml(self) -> str:
        import tomli_w

        header = "# cnnlab training config: every hyperparameter this run chose.\n"
        return header + tomli_w.dumps(self.to_dict())
