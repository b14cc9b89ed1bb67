"""Int8 layers whose state is plain tensors: a quantized model saved as safetensors, loaded without pickle.

Static post-training quantization (Jacob et al. 2018, "Quantization and Training of Neural
Networks for Efficient Integer-Arithmetic-Only Inference", eq. 1: real = scale * (q - zero_point))
runs each convolution and linear layer on 8-bit integers: weights int8, per output channel,
symmetric (zero point 0); activations uint8, per tensor, with a scale and zero point calibrated
on training images (`cnnlab.compress.quantize`).

PyTorch's own quantized modules (`torch.ao.nn.quantized`) keep their weights in packed C++
objects that only pickle can save. These modules hold the same numbers as int8/float32
tensors (`weight`, `weight_scale`, `bias`, the output's `scale` and `zero_point`) and pack them
for the x86 kernels (`torch.ops.quantized.*`, fbgemm/oneDNN) on first use, so `state_dict`
goes to safetensors and a fresh process rebuilds the model from provenance.json alone.

A model is turned int8 in place by `int8_layers`: every layer named in a description is
replaced (see `compress.quantize` for what each kind means); the Sequential's first two parts
become normalize -> quantize (pixels to uint8) -> net, and the last linear layer gives floats back.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import register_flop_formula

from cnnlab.errors import CnnlabError

# uint8 activations use 0..127, as PyTorch's x86/fbgemm default does (`reduce_range`): without
# AVX-512 VNNI the kernels add pairs of u8*s8 products in int16, which 8 full bits can overflow.
ACTIVATION_MAX = 127
KINDS = ("conv", "linear", "identity", "maxpool")


@register_flop_formula([torch.ops.quantized.conv2d, torch.ops.quantized.conv2d_relu,
                        torch.ops.quantized.linear, torch.ops.quantized.linear_relu], get_raw=True)
def int8_flops(x: Tensor, packed: Any, *args: Any, out_val: Tensor, **kwargs: Any) -> int:
    """FLOPs of an int8 kernel call as torch's counter counts the float ones (a multiply-add is
    2), so `cnnlab summary` and `compare` see an int8 model's arithmetic: each output number
    takes one multiply-add per weight of its filter, (in / groups) x kh x kw, or in for a linear."""
    weight = packed.unpack()[0]  # (out, in / groups, kh, kw) or (out, in)
    return 2 * out_val.numel() * weight[0].numel()


@contextmanager
def quiet_quantized() -> Iterator[None]:
    """Silence torch's notice that quantized tensor types will be removed: the kernels this
    module calls are still the CPU int8 path shipped in torch 2.14 (see compress/quantize.py)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*quantiz.*deprecated.*")
        yield


class Quantize(nn.Module):
    """Float (N, C, H, W) -> uint8 quantized tensor with the calibrated scale and zero point."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("zero_point", torch.zeros((), dtype=torch.int64))
        self._grid: tuple[float, int] | None = None  # the buffers as Python numbers: read once, not per image
        self.register_load_state_dict_post_hook(lambda module, _keys: module.forget_packed())

    def forget_packed(self) -> None:
        self._grid = None

    def forward(self, x: Tensor) -> Tensor:
        if x.requires_grad:  # an attribution or an attack asks for d(output)/d(pixels): integers have none
            raise CnnlabError("an int8 model has no gradient, so gradient-based analyses (explain, attack) cannot run on it; "
                              "run them on its parent run (provenance.json: derived.parent).")
        if self._grid is None:  # torch warns once per process, on the first quantized tensor: silenced here
            self._grid = (float(self.scale), int(self.zero_point))
            with quiet_quantized():
                return torch.quantize_per_tensor(x, *self._grid, torch.quint8)
        return torch.quantize_per_tensor(x, *self._grid, torch.quint8)


class _Int8(nn.Module):
    """What an int8 convolution and linear layer share: weights, scales, output grid, packing."""

    def __init__(self, weight_shape: tuple[int, ...], relu: bool, float_out: bool) -> None:
        super().__init__()
        # Parameters that never learn: `parameters()` still finds the model's device and counts its weights
        self.weight = nn.Parameter(torch.zeros(weight_shape, dtype=torch.int8), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(weight_shape[0]), requires_grad=False)
        self.register_buffer("weight_scale", torch.ones(weight_shape[0]))  # one per output channel
        self.register_buffer("scale", torch.ones(()))  # the output's grid
        self.register_buffer("zero_point", torch.zeros((), dtype=torch.int64))
        self.relu, self.float_out = relu, float_out
        self._packed: tuple[Any, float, int] | None = None
        self.register_load_state_dict_post_hook(lambda module, _keys: module.forget_packed())

    def forget_packed(self) -> None:
        self._packed = None

    def packed(self) -> tuple[Any, float, int]:
        """(packed weights, output scale, output zero point), packed once for the kernels."""
        if self._packed is None:
            with quiet_quantized():
                zeros = torch.zeros(len(self.weight_scale), dtype=torch.int64)
                q = torch._make_per_channel_quantized_tensor(self.weight.data, self.weight_scale.double(), zeros, 0)
                self._packed = (self.pack(q, self.bias.data.float()), float(self.scale), int(self.zero_point))
        return self._packed

    def pack(self, weight: Tensor, bias: Tensor) -> Any:
        """The kernel's packed form of a per-channel int8 weight and its float bias; each layer
        kind (convolution, linear) packs for its own kernel, so this base class has none."""
        raise NotImplementedError

    def finish(self, y: Tensor) -> Tensor:
        return y.dequantize() if self.float_out else y


class Int8Conv2d(_Int8):
    """A 2-D convolution (optionally with its ReLU fused) on uint8 inputs and int8 weights."""

    def __init__(self, conv: nn.Conv2d, relu: bool = False, float_out: bool = False) -> None:
        super().__init__(tuple(conv.weight.shape), relu, float_out)
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups

    def pack(self, weight: Tensor, bias: Tensor) -> Any:
        return torch.ops.quantized.conv2d_prepack(weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def forward(self, x: Tensor) -> Tensor:
        packed, scale, zero_point = self.packed()
        op = torch.ops.quantized.conv2d_relu if self.relu else torch.ops.quantized.conv2d
        return self.finish(op(x, packed, scale, zero_point))

    def extra_repr(self) -> str:
        out, inp, kh, kw = self.weight.shape
        return f"{inp * self.groups}, {out}, kernel_size=({kh}, {kw}), stride={self.stride}, padding={self.padding}, relu={self.relu}"


class Int8Linear(_Int8):
    """A linear layer (optionally with its ReLU fused) on uint8 inputs and int8 weights."""

    def __init__(self, linear: nn.Linear, relu: bool = False, float_out: bool = False) -> None:
        super().__init__(tuple(linear.weight.shape), relu, float_out)

    def pack(self, weight: Tensor, bias: Tensor) -> Any:
        return torch.ops.quantized.linear_prepack(weight, bias)

    def forward(self, x: Tensor) -> Tensor:
        packed, scale, zero_point = self.packed()
        op = torch.ops.quantized.linear_relu if self.relu else torch.ops.quantized.linear
        return self.finish(op(x, packed, scale, zero_point))

    def extra_repr(self) -> str:
        out, inp = self.weight.shape
        return f"in_features={inp}, out_features={out}, relu={self.relu}, float_out={self.float_out}"


def submodule(root: nn.Module, name: str) -> nn.Module:
    """The submodule at dotted `name` ("net.features.conv1"), or one sentence naming it."""
    try:
        return root.get_submodule(name)
    except AttributeError:
        raise CnnlabError(f"the model has no layer {name}, which its description names.") from None


def set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule at dotted `name` by `module`."""
    parent, _, child = name.rpartition(".")
    setattr(submodule(root, parent) if parent else root, child, module)


def int8_layers(model: nn.Sequential, layers: dict[str, dict[str, Any]]) -> nn.Sequential:
    """`model` (normalize, net) with the layers described replaced by their int8 form, untrained:
    {"kind": "conv"|"linear", "relu": bool, "float_out": bool}, {"kind": "identity"} (a BatchNorm
    folded into its convolution, a ReLU fused into its layer), {"kind": "maxpool", "kernel": [h, w]}
    (an adaptive max-pool whose input size was known at calibration: uint8 has no adaptive one)."""
    for name, layer in layers.items():
        old = submodule(model, name)
        kind = layer["kind"]
        if kind == "conv":
            new: nn.Module = Int8Conv2d(old, layer["relu"], layer["float_out"])
        elif kind == "linear":
            new = Int8Linear(old, layer["relu"], layer["float_out"])
        elif kind == "maxpool":
            new = nn.MaxPool2d(tuple(layer["kernel"]))
        else:
            parent, _, child = name.rpartition(".")
            if isinstance(submodule(model, parent), nn.Sequential):  # gone: a call of an Identity costs ~2.5 us at batch 1
                delattr(submodule(model, parent), child)
                continue
            new = nn.Identity()
        set_module(model, name, new)
    return nn.Sequential(OrderedDict(normalize=model.normalize, quantize=Quantize(), net=model.net))


def layers_problem(layers: object) -> str | None:
    """What is wrong with an int8 description (see `int8_layers`), or None."""
    if not (isinstance(layers, dict) and layers and all(isinstance(n, str) and n.startswith("net.") for n in layers)):
        return "derived.layers is not a table of the net's layers"
    for name, layer in layers.items():
        if not (isinstance(layer, dict) and layer.get("kind") in KINDS):
            return f"derived.layers.{name} has no kind among {', '.join(KINDS)}"
        if layer["kind"] in ("conv", "linear") and not all(isinstance(layer.get(k), bool) for k in ("relu", "float_out")):
            return f"derived.layers.{name} does not say relu and float_out (true or false)"
        kernel = layer.get("kernel")
        if layer["kind"] == "maxpool" and not (isinstance(kernel, list) and len(kernel) == 2
                                               and all(isinstance(k, int) and k >= 1 for k in kernel)):
            return f"derived.layers.{name}.kernel is not two positive sides"
    return None
