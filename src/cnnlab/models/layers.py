"""Layers of any `nn.Module` by kind or by name: the first convolution (the filters `inside`
draws), the last one (where Grad-CAM looks), the last linear layer (what TracIn reads)."""

from __future__ import annotations

from torch import nn

from cnnlab.errors import CnnlabError, unknown_name

# How a sentence names a layer type: "has no convolution layer" reads better than "no Conv2d".
KIND_NAMES: dict[type[nn.Module], str] = {nn.Conv2d: "convolution", nn.Linear: "linear"}


def layers_of(model: nn.Module, kind: type[nn.Module] = nn.Conv2d, *, hint: str = "") -> list[tuple[str, nn.Module]]:
    """Every `kind` layer of `model` as (its name in `named_modules()`, the layer), in definition order.

    None is an error: "the model (Sequential) has no convolution layer" followed by `hint`, the
    rest of the sentence, which says what needed one (", so it has no filters to show").
    """
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, kind)]
    if not found:
        label = KIND_NAMES.get(kind, kind.__name__)
        raise CnnlabError(f"the model ({type(model).__name__}) has no {label} layer{hint}.")
    return found


def first_layer(model: nn.Module, kind: type[nn.Module] = nn.Conv2d, *, hint: str = "") -> tuple[str, nn.Module]:
    """The first `kind` layer in definition order: for a CNN, the convolution that sees the pixels."""
    return layers_of(model, kind, hint=hint)[0]


def last_layer(model: nn.Module, kind: type[nn.Module] = nn.Conv2d, *, hint: str = "") -> tuple[str, nn.Module]:
    """The last `kind` layer in definition order: for a CNN, the convolution with the coarsest maps."""
    return layers_of(model, kind, hint=hint)[-1]


def find_layer(
    model: nn.Module, name: str | None, kind: type[nn.Module] = nn.Conv2d, *, hint: str = ""
) -> tuple[str, nn.Module]:
    """The layer called `name` (as in `model.named_modules()`), or the last `kind` layer when
    `name` is None. An unknown name is an error that lists the conv and linear layers."""
    if name is None:
        return last_layer(model, kind, hint=hint)
    layers = dict(model.named_modules())
    if name not in layers or name == "":
        known = [n for n, m in layers.items() if n and isinstance(m, (nn.Conv2d, nn.Linear))]
        raise unknown_name("layer", name, known)
    return name, layers[name]
