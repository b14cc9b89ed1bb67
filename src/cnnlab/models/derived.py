"""Models derived from a trained run's model, rebuilt from a JSON description instead of a pickle.

A run made by `cnnlab tree` or `cnnlab compress` holds a model the registry cannot build by name
alone: a pruned network with fewer channels, an int8 one, a tree of networks. Its
provenance.json says how it was derived, and what rebuilding it needs:

    "derived": {"method": "prune", "parent": "runs/lenet", "amount": 0.5, "structured": true,
                "layers": {"net.features.conv1": [1, 3], ...}}

`rebuild(derived, base)` turns that description into the untrained module, given `base(k)`:
the run's registered model (config.model, for the run's input) with k classes. Its weights
then load from model.safetensors like any run's, so every command that opens a run
(`Run.load`) works on a derived one unchanged. Each method registers a rebuilder and a check
of its own fields (`register_rebuilder`), run when provenance.json is read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models.int8 import int8_layers, layers_problem, set_module, submodule
from cnnlab.models.tree import TreeNet, groups_problem

Base = Callable[[int], nn.Module]  # number of classes -> the run's registered model, untrained
Rebuild = Callable[[dict[str, Any], Base, int], nn.Module]  # (derived, base, classes) -> the derived model
Check = Callable[[dict[str, Any], int], "str | None"]  # (derived, classes of the run) -> problem

# Families whose network is a chain (each layer feeds the next, no skip connection): channels
# can be cut from a layer and its successor alone, and uint8 tensors flow from layer to layer.
CHAIN_FAMILIES = ("linear", "lenet", "alexnet", "vgg", "fast")


@dataclass(frozen=True)
class Rebuilder:
    rebuild: Rebuild
    check: Check


_REBUILDERS: dict[str, Rebuilder] = {}


def register_rebuilder(method: str, check: Check) -> Callable[[Rebuild], Rebuild]:
    def wrap(rebuild: Rebuild) -> Rebuild:
        _REBUILDERS[method] = Rebuilder(rebuild, check)
        return rebuild

    return wrap


def methods() -> list[str]:
    return list(_REBUILDERS)


def derived_problem(derived: object, num_classes: int) -> str | None:
    """What is wrong with a provenance 'derived' record of a run of `num_classes` classes, or None."""
    if not isinstance(derived, dict):
        return "derived is not an object"
    if derived.get("method") not in _REBUILDERS:
        return f"derived.method is not one of {', '.join(_REBUILDERS)}"
    if not isinstance(derived.get("parent"), str):
        return "derived.parent is not the parent run's path"
    if "from" in derived and (problem := derived_problem(derived["from"], num_classes)):
        return problem.replace("derived.", "derived.from.", 1)
    return _REBUILDERS[derived["method"]].check(derived, num_classes)


def rebuild(derived: dict[str, Any], base: Base, num_classes: int) -> nn.Module:
    """The untrained derived model `derived` describes (checked by `derived_problem` first).
    A model derived from a derived one (int8 of a pruned run) holds its parent's description
    under "from": the parent's model is rebuilt first and is this one's base."""
    own_base = partial(rebuild, derived["from"], base) if "from" in derived else base
    return _REBUILDERS[derived["method"]].rebuild(derived, own_base, num_classes)


# -- pruning: channels cut out of layers ----------------------------------------------------
def resized(module: nn.Module, size_in: int, size_out: int) -> nn.Module:
    """A fresh layer like `module` with `size_in` inputs and `size_out` outputs (channels or features)."""
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            raise CnnlabError(f"cannot resize a grouped convolution ({module}).")
        return nn.Conv2d(size_in, size_out, module.kernel_size, module.stride, module.padding, module.dilation,
                         bias=module.bias is not None, padding_mode=module.padding_mode)
    if isinstance(module, nn.Linear):
        return nn.Linear(size_in, size_out, bias=module.bias is not None)
    if isinstance(module, nn.BatchNorm2d):
        return nn.BatchNorm2d(size_out, module.eps, module.momentum, module.affine, module.track_running_stats)
    raise CnnlabError(f"cannot resize a {type(module).__name__}; only Conv2d, Linear and BatchNorm2d.")


def resize_layers(model: nn.Module, layers: dict[str, list[int]]) -> nn.Module:
    """`model` with each named layer replaced by its resized form: {name: [inputs, outputs]}."""
    for name, (size_in, size_out) in layers.items():
        set_module(model, name, resized(submodule(model, name), size_in, size_out))
    return model


def _prune_problem(derived: dict[str, Any], num_classes: int) -> str | None:
    amount = derived.get("amount")
    if not (isinstance(amount, (int, float)) and not isinstance(amount, bool) and 0 < amount < 1):
        return "derived.amount is not a share between 0 and 1"
    layers = derived.get("layers", {})
    if not (isinstance(layers, dict) and all(
            isinstance(v, list) and len(v) == 2 and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in v)
            for v in layers.values())):
        return "derived.layers is not a table of [inputs, outputs] sizes"
    return None


@register_rebuilder("prune", _prune_problem)
def _prune(derived: dict[str, Any], base: Base, num_classes: int) -> nn.Module:
    # unstructured pruning zeroes weights and keeps every shape: no layers to resize
    return resize_layers(base(num_classes), derived.get("layers", {}))


# -- int8 quantization ----------------------------------------------------------------------
def _quantize_problem(derived: dict[str, Any], num_classes: int) -> str | None:
    if derived.get("dtype") != "int8":
        return "derived.dtype is not int8"
    return layers_problem(derived.get("layers"))


@register_rebuilder("quantize", _quantize_problem)
def _quantize(derived: dict[str, Any], base: Base, num_classes: int) -> nn.Module:
    model = base(num_classes)
    if not isinstance(model, nn.Sequential):
        raise CnnlabError("an int8 model is rebuilt from a registered model (normalize, net); this one is not.")
    return int8_layers(model, derived["layers"])


# -- distillation: the student is the registered model itself ---------------------------------
def _distill_problem(derived: dict[str, Any], num_classes: int) -> str | None:
    for key in ("temperature", "alpha"):
        value = derived.get(key)
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0):
            return f"derived.{key} is not a positive number"
    return None if isinstance(derived.get("teacher"), str) else "derived.teacher is not the teacher run's path"


@register_rebuilder("distill", _distill_problem)
def _distill(derived: dict[str, Any], base: Base, num_classes: int) -> nn.Module:
    return base(num_classes)


# -- CNN Tree: a root over groups, a leaf per group of >= 2 classes ---------------------------
def _tree_problem(derived: dict[str, Any], num_classes: int) -> str | None:
    return groups_problem(derived.get("groups"), num_classes)


@register_rebuilder("tree", _tree_problem)
def _tree(derived: dict[str, Any], base: Base, num_classes: int) -> nn.Module:
    groups = derived["groups"]
    return TreeNet(base(len(groups)), [base(len(g)) for g in groups if len(g) > 1], groups)
