"""Layers by name, and a context manager that watches one layer's output.

pytorch-grad-cam users report hooks that outlive the call and layers that silently give
empty gradients. Here a hook lives exactly as long as a `with` block, and a layer that the
forward pass never reached, or whose output carries no gradient, is an error that names it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from torch import Tensor, nn

from cnnlab.errors import CnnlabError, unknown_name


def find_layer(model: nn.Module, name: str | None, kind: type[nn.Module] = nn.Conv2d) -> tuple[str, nn.Module]:
    """The layer called `name` (as in `model.named_modules()`), or the last `kind` layer in
    definition order when `name` is None: for a CNN, the last convolution."""
    layers = dict(model.named_modules())
    if name is not None:
        if name not in layers or name == "":
            known = [n for n, m in layers.items() if n and isinstance(m, (nn.Conv2d, nn.Linear))]
            raise unknown_name("layer", name, known)
        return name, layers[name]
    found = [(n, m) for n, m in layers.items() if isinstance(m, kind)]
    if not found:
        raise CnnlabError(
            f"{type(model).__name__} has no {kind.__name__} layer to explain; name one with --layer (layer=...)."
        )
    return found[-1]


@dataclass
class Captured:
    """What the watched layer produced in the forward pass inside the `with` block."""

    name: str
    outputs: list[Tensor] = field(default_factory=list)

    @property
    def output(self) -> Tensor:
        if not self.outputs:
            raise CnnlabError(f"layer '{self.name}' was not used by the forward pass; choose another layer.")
        out = self.outputs[-1]
        if not isinstance(out, Tensor) or not out.requires_grad:
            raise CnnlabError(
                f"layer '{self.name}' gives no gradient (its output is detached or not a tensor); choose another layer."
            )
        return out


@contextmanager
def watch(model: nn.Module, name: str | None, kind: type[nn.Module] = nn.Conv2d) -> Iterator[Captured]:
    """`with watch(model, None) as seen: model(x)` -> `seen.output` is the last conv's output,
    still in the autograd graph; the hook is removed when the block ends, error or not."""
    name, layer = find_layer(model, name, kind)
    seen = Captured(name)
    handle = layer.register_forward_hook(lambda module, inputs, output: seen.outputs.append(output))
    try:
        yield seen
    finally:
        handle.remove()


@contextmanager
def watch_input(model: nn.Module, name: str | None, kind: type[nn.Module] = nn.Linear) -> Iterator[Captured]:
    """Like `watch`, but records the layer's input (for the last linear layer: the features
    it classifies, which TracIn's last-layer gradient is built from)."""
    name, layer = find_layer(model, name, kind)
    seen = Captured(name)
    handle = layer.register_forward_hook(lambda module, inputs, output: seen.outputs.append(inputs[0]))
    try:
        yield seen
    finally:
        handle.remove()
