"""`recording(layers)`: what chosen layers of a model output (or take in) during a forward pass.

pytorch-grad-cam users report hooks that outlive the call and layers that silently give
nothing. Here a hook lives exactly as long as a `with` block, and asking for a layer that the
forward pass never reached is an error that names it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from torch import Tensor, nn

from cnnlab.errors import CnnlabError


class Recorded(dict[str, Tensor]):
    """Layer name -> what it saw in the latest forward pass, in the order the layers ran."""

    def __missing__(self, name: str) -> Tensor:
        raise CnnlabError(f"layer '{name}' was not used by the forward pass; choose another layer.")


@contextmanager
def recording(
    layers: Iterable[tuple[str, nn.Module]], *, inputs: bool = False, copy: bool = False
) -> Iterator[Recorded]:
    """`with recording([("conv1", conv)]) as seen: model(x)` -> `seen["conv1"]` is conv's
    output (its first input with `inputs=True`) in the latest forward pass; every hook is
    removed when the block ends, error or not.

    Without `copy` the tensor is the layer's own, still in the autograd graph (Grad-CAM
    differentiates with respect to it). With `copy`, a detached copy: an in-place ReLU right
    after a convolution would otherwise overwrite the recorded output with its own.
    """
    seen = Recorded()

    def keep(name: str, module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
        t = args[0] if inputs else output
        seen[name] = t.detach().clone() if copy else t

    handles = []
    try:
        for name, layer in layers:
            handles.append(layer.register_forward_hook(functools.partial(keep, name)))
        yield seen
    finally:
        for h in handles:
            h.remove()
