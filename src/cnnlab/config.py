"""Every hyperparameter a training run chooses, in one dataclass.

The field names are the `cnnlab train` flags (`batch_size` <- `--batch-size`) and the keys of
`config.toml`, so a run's config file can be edited and handed back with `--config`.
Precedence: these defaults < a `--config` file < flags given on the command line.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("onecycle", "cosine", "step", "none")
DEVICES = ("cpu", "cuda", "auto")
RECIPES = ("none", "fast")  # what each chooses: training/recipes.py
DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3}


@dataclass(frozen=True)
class TrainConfig:
    model: str = "lenet5"
    data: str = "digits"
    data_dir: str = ""  # "" = the dataset's usual places (see `cnnlab datasets`)
    val_fraction: float = 0.1  # of the training images, held out to pick the best epoch
    image_size: int = 0  # imagefolder only: resize to this side; 0 = the loader's default
    on_corrupt: str = "skip"  # imagefolder only: 'skip' an undecodable image (named) or 'error'
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.0  # 0 = the optimizer's usual peak: 0.05 for SGD, 1e-3 for Adam/AdamW
    momentum: float = 0.9  # SGD (Nesterov) only
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    label_smoothing: float = 0.0
    augment: str = "none"  # comma-separated, applied to whole batches: crop, flip
    seed: int = 0
    device: str = "cpu"
    checkpoint_every: int = 0  # steps between mid-epoch checkpoints; 0 = at epoch ends only
    keep_checkpoints: bool = False  # also keep each epoch's weights (checkpoints/), for TracIn
    adversarial: str = "none"  # adversarial training: none, pgd (Madry et al.) or fgsm-rs (Wong et al.)
    eps: float = 0.0  # L-inf radius of the adversarial training, pixels in [0, 1]
    adv_steps: int = 7  # PGD steps per training batch
    mitigate: str = "none"  # group bias mitigation: none, reweight or groupdro
    dp: bool = False  # DP-SGD through Opacus
    target_epsilon: float = 8.0  # DP: privacy budget spent by the end of training
    delta: float = 1e-5  # DP: the delta of (epsilon, delta)-differential privacy
    max_grad_norm: float = 1.0  # DP: per-sample gradient clipping norm
    recipe: str = "none"  # a named set of the choices above: none or fast (see training/recipes.py)
    budget: float = 0.0  # seconds for the whole command; > 0 picks the epochs that fit (unless epochs is set)
    tta: bool = False  # score with flip test-time augmentation: mean logits of the image and its mirror
    channels_last: bool = False  # NHWC memory for model and batches (oneDNN's fast convolution layout)
    nproc: int = 1  # processes training together (DDP); batch_size stays the global batch

    def resolved(self) -> TrainConfig:
        """Fill the 'usual' values in and check every choice, so config.toml records what ran."""
        from cnnlab.data.batches import parse_augment

        checks = [
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}"),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}"),
            (self.on_corrupt in ("skip", "error"), "on corrupt must be skip or error"),
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size >= 2, "batch size must be at least 2"),
            (self.lr >= 0, "lr must be positive"),
            (self.weight_decay >= 0, "weight decay must be 0 or more"),
            (0 <= self.label_smoothing < 1, "label smoothing must be in [0, 1)"),
            (0 <= self.val_fraction < 1, "val fraction must be in [0, 1)"),
            (self.checkpoint_every >= 0, "checkpoint every must be 0 or more steps"),
            (self.adversarial in ("none", "pgd", "fgsm-rs"), "adversarial must be none, pgd or fgsm-rs"),
            (0 <= self.eps <= 1, f"eps {self.eps} is outside [0, 1]: it is an L-inf radius in pixels in [0, 1]"),
            (self.adversarial == "none" or self.eps > 0, f"adversarial training ({self.adversarial}) needs --eps above 0, e.g. 0.1"),
            (self.adv_steps >= 1, "adv steps must be at least 1"),
            (self.mitigate in ("none", "reweight", "groupdro"), "mitigate must be none, reweight or groupdro"),
            (self.target_epsilon > 0, "target epsilon must be above 0, e.g. 8"),
            (0 < self.delta < 1, "delta must be in (0, 1), e.g. 1e-5 (below 1 / number of training images)"),
            (self.max_grad_norm > 0, "max grad norm must be above 0, e.g. 1.0"),
            (self.recipe in RECIPES, f"recipe must be one of {', '.join(RECIPES)}"),
            (self.budget >= 0, "budget must be 0 (none) or a positive time, e.g. 2m"),
            (not (self.dp and self.adversarial != "none"), "--dp and --adversarial cannot be combined (the privacy accounting assumes plain DP-SGD steps)"),
            (not (self.dp and self.mitigate != "none"), "--dp and --mitigate cannot be combined (group weights change each example's sensitivity)"),
            (self.nproc >= 1, "nproc must be at least 1 (processes training together)"),
            (not (self.dp and self.nproc > 1), "--dp trains in one process: Opacus' per-sample clipping with several processes (DDP) is not supported, drop --nproc"),
            (not (self.mitigate == "groupdro" and self.nproc > 1), "--mitigate groupdro trains in one process (its group weights follow each batch), drop --nproc"),
            (self.batch_size >= 2 * self.nproc, f"batch size {self.batch_size} is the global batch: with --nproc {self.nproc} it must be at least {2 * self.nproc} (2 images per process)"),
        ]
        for ok, message in checks:
            if not ok:
                raise CnnlabError(f"{message} (check your flags or config file).")
        augment = ",".join(parse_augment(self.augment)) or "none"
        return replace(self, lr=self.lr or DEFAULT_LR[self.optimizer], augment=augment)

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
                value = float(value)
            if not isinstance(value, want) or isinstance(value, bool) != (want is bool):
                kind = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[want]
                raise CnnlabError(f"{origin}: '{key}' must be {kind}, got {value!r}.")
            typed[key] = value
        return cls(**typed)

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            values = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise CnnlabError(f"config file {path} does not exist.") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise CnnlabError(f"config file {path} is not valid TOML: {e}.") from None
        return cls.from_dict(values, origin=str(path))

    def to_toml(self) -> str:
        import tomli_w

        header = "# cnnlab training config: every hyperparameter this run chose.\n"
        return header + tomli_w.dumps(self.to_dict())
