"""A model, layer by layer: what was chosen, what it outputs, what is learned, what it costs.

The lecture's distinction made concrete: the *hyperparameters* (kernel size, stride, padding,
channels, and the training settings of a run) are chosen by a person; the *parameters*
(weights and biases) are learned. FLOPs come from `torch.utils.flop_counter` (a multiply-add
counts 2), for one image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.models import eval_mode, recording


@dataclass
class Layer:
    name: str  # dotted path in the model, e.g. "net.conv1"
    type: str  # the module class, e.g. "Conv2d"
    chosen: str  # its hyperparameters (the module's extra_repr), e.g. "1, 6, kernel_size=(5, 5)"
    output_shape: list[int]  # for one image, without the batch dimension
    params: int  # learned parameters held by this layer itself
    flops: int  # forward FLOPs for one image


@dataclass
class Summary:
    model: str
    input_shape: list[int]
    layers: list[Layer]
    params: int  # learned parameters in total
    trainable: int  # of which require a gradient
    buffers: int  # state that is not learned by gradient (e.g. BatchNorm running statistics)
    flops: int  # forward FLOPs for one image
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # a run's training choices

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pair(v: int | tuple[int, ...]) -> str:
    v = (v, v) if isinstance(v, int) else tuple(v)
    return str(v[0]) if len(set(v)) == 1 else "x".join(map(str, v))


def chosen(m: nn.Module) -> str:
    """A layer's hyperparameters, short: 'conv 1->6, 5x5, stride 1, pad 2' rather than its repr."""
    if isinstance(m, nn.Conv2d):
        k = "x".join(map(str, m.kernel_size))
        text = f"{m.in_channels}->{m.out_channels}, {k}, stride {_pair(m.stride)}, pad {_pair(m.padding)}"
        return text + (f", groups {m.groups}" if m.groups > 1 else "") + ("" if m.bias is not None else ", no bias")
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        return f"{_pair(m.kernel_size)}x{_pair(m.kernel_size)}, stride {_pair(m.stride)}"
    if isinstance(m, nn.Linear):
        return f"{m.in_features}->{m.out_features}"
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return f"{m.num_features} channels"
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        square = isinstance(m.output_size, int) or len(set(m.output_size)) == 1
        return f"to {_pair(m.output_size)}x{_pair(m.output_size)}" if square else f"to {m.output_size}"
    if isinstance(m, (nn.ReLU, nn.Dropout)):
        return f"p={m.p}" if isinstance(m, nn.Dropout) else ""
    return m.extra_repr()


def summarize(
    model: nn.Module, input_shape: tuple[int, int, int], name: str = "", hyperparameters: dict[str, Any] | None = None
) -> Summary:
    """Summarise `model` on one input of `input_shape` (C, H, W).

    Runs one forward pass in eval mode on the model's device (a model built on the `meta`
    device is summarised without allocating any memory).
    """
    leaves = {n: m for n, m in model.named_modules() if n and (not list(m.children()) or any(True for _ in m.parameters(recurse=False)))}
    param = next(model.parameters(), None)
    x = torch.zeros(1, *input_shape, device=param.device if param is not None else "cpu")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), eval_mode(model), recording(leaves.items()) as outputs, counter:
        model(x)
    shapes = {n: list(out.shape[1:]) for n, out in outputs.items()}
    root = type(model).__name__
    flops = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}  # a module's, with its children's

    def own_flops(n: str, m: nn.Module) -> int:
        """A layer's FLOPs less its children's: those of the weights it holds itself (a DAG-RNN's
        recurrent matrix), so that every multiply-add is counted in exactly one row."""
        return flops.get(f"{root}.{n}", 0) - sum(flops.get(f"{root}.{n}.{c}", 0) for c, _ in m.named_children())

    layers = [
        Layer(
            name=n,
            type=type(m).__name__,
            chosen=chosen(m),
            output_shape=shapes.get(n, []),
            params=sum(p.numel() for p in m.parameters(recurse=False)),
            flops=own_flops(n, m),
        )
        for n, m in leaves.items()
    ]
    return Summary(
        model=name or type(model).__name__,
        input_shape=list(input_shape),
        layers=layers,
        params=sum(p.numel() for p in model.parameters()),
        trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
        buffers=sum(b.numel() for b in model.buffers()),
        flops=counter.get_total_flops(),
        hyperparameters=dict(hyperparameters or {}),
    )
