"""Models by name: `build_model("resnet20", (3, 32, 32), 10)` -> a plain `nn.Module`.

Each family file registers builders with `@register_model`; a builder takes a `ModelSpec` and
returns the network; `build_model` puts the `Normalize` layer in front, so every model takes
pixels in [0, 1]. The registry also drives the tests (one parametrized test per model).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from torch import nn

from cnnlab.errors import CnnlabError, unknown_name
from cnnlab.models.normalize import Normalize


@dataclass(frozen=True)
class ModelSpec:
    """What a builder needs to know: the input it will see and how many classes it predicts."""

    input_shape: tuple[int, int, int]  # (C, H, W) of an image, or of each frame of a clip
    num_classes: int
    frames: int | None = None  # T for a model of clips (N, T, C, H, W); None for images

    @property
    def channels(self) -> int:
        return self.input_shape[0]

    @property
    def height(self) -> int:
        return self.input_shape[1]

    @property
    def width(self) -> int:
        return self.input_shape[2]


Builder = Callable[[ModelSpec], nn.Module]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Builder
    family: str
    paper: str  # the reference, e.g. "He et al. 2016, Deep Residual Learning ..."
    reference_input: tuple[int, ...]  # the paper's input (C, H, W), or (T, C, H, W) for clips
    reference_classes: int
    reference_params: int  # parameter count at the reference input and classes
    tasks: tuple[str, ...] = ("classify",)  # what its outputs serve (cnnlab.tasks)
    # TrainConfig values this model trains with where the user chose none (`ssd`: AdamW, as SGD at
    # its default lr diverges); config.toml records what was used
    training: Mapping[str, object] = field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    family: str,
    paper: str,
    reference_input: tuple[int, ...],
    reference_classes: int,
    reference_params: int,
    name: str | None = None,
    tasks: tuple[str, ...] = ("classify",),
    training: Mapping[str, object] | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator: register a builder under `name`, by default its function name (`def resnet20` -> "resnet20")."""

    def wrap(builder: Builder) -> Builder:
        nonlocal name
        name = name or builder.__name__
        if name in _REGISTRY:
            raise ValueError(f"two model builders are named {name}")
        _REGISTRY[name] = ModelEntry(
            name, builder, family, paper, reference_input, reference_classes, reference_params, tasks, dict(training or {})
        )
        return builder

    return wrap


# The order of the lecture: no hidden layer, hidden layers, then the CNNs by year.
FAMILIES = ("linear", "lenet", "alexnet", "vgg", "resnet", "fast", "fcn", "yolo", "ssd", "dcgan", "video", "deeppose")


def _load_families() -> None:
    # Importing a family file runs its @register_model decorators.
    from cnnlab.models import alexnet, dcgan, deeppose, fast, fcn, lenet, linear, resnet, ssd, vgg, video, yolo  # noqa: F401


def model_entries() -> list[ModelEntry]:
    _load_families()
    return sorted(_REGISTRY.values(), key=lambda e: FAMILIES.index(e.family))


def model_names() -> list[str]:
    return [e.name for e in model_entries()]


def get_entry(name: str) -> ModelEntry:
    _load_families()
    if name not in _REGISTRY:
        raise unknown_name("model", name, model_names())
    return _REGISTRY[name]


def build_model(
    name: str,
    input_shape: Sequence[int] = (1, 28, 28),
    num_classes: int = 10,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> nn.Sequential:
    """Build a registered model that takes pixels in [0, 1].

    Returns `nn.Sequential(normalize=Normalize(mean, std), net=<the family's network>)`;
    mean/std default to 0 and 1 (no change) and are usually the training set's statistics.
    `input_shape` is (C, H, W), or (T, C, H, W) for a model of clips of T frames.
    """
    entry = get_entry(name)
    shape = tuple(int(v) for v in input_shape)
    if len(shape) not in (3, 4) or min(shape) < 1 or num_classes < 2:
        raise CnnlabError(
            f"cannot build {name} for input {'x'.join(map(str, shape))} with {num_classes} classes; "
            "give a positive input shape (CxHxW, or TxCxHxW for clips) and at least 2 classes."
        )
    *frames, c, h, w = shape
    if bool(frames) != (len(entry.reference_input) == 4):  # a 2-D CNN given clips, or a video model given images
        takes = "clips (TxCxHxW)" if len(entry.reference_input) == 4 else "images (CxHxW)"
        raise CnnlabError(f"{name} takes {takes}, not input {'x'.join(map(str, shape))}; choose a model for your data "
                          "(`cnnlab models`).")
    for what, values in (("mean", mean), ("std", std)):
        if values is not None and len(values) != c:
            raise CnnlabError(f"{name}: {what} has {len(values)} values but the input has {c} channels.")
    spec = ModelSpec((c, h, w), int(num_classes), frames[0] if frames else None)
    net = entry.builder(spec)
    normalize = Normalize(mean if mean is not None else [0.0] * c, std if std is not None else [1.0] * c)
    return nn.Sequential(OrderedDict(normalize=normalize, net=net))


def count_parameters(model: nn.Module) -> int:
    """Learned parameters (buffers such as BatchNorm statistics are not counted)."""
    return sum(p.numel() for p in model.parameters())
