"""Post-training static int8 quantization of a trained run, calibrated on its training images.

Jacob et al. 2018 ("Quantization and Training of Neural Networks for Efficient Integer-
Arithmetic-Only Inference"): real = scale * (q - zero_point). The recipe is PyTorch's eager
one (`torch.ao.quantization`: fuse, observe, convert) written out for cnnlab's chain networks:
1. fold each BatchNorm into the convolution before it (w' = w * g / sqrt(var + eps),
   b' = beta + (b - mean) * g / sqrt(var + eps)) and fuse each ReLU into the layer before it;
2. calibrate: run `calibration` training images through the float model and keep the range
   of the input (after Normalize) and of every layer's output (min/max observers);
3. convert: weights to int8 per output channel (symmetric, scale = max|w| / 127), every
   activation to uint8 on its calibrated range; the last linear layer returns floats.

Which path in torch 2.14. `torch.ao.quantization` (eager and FX) still ships and runs, but warns
that it is deprecated in favour of torchao; torchao (its `quantize_` API and the PT2E flow with
the X86 Inductor quantizer) is the maintained path, but it is not installed here and its int8 CPU
speed comes from `torch.compile`, a compile per model and shape. Both end in the same fbgemm /
oneDNN int8 kernels (`torch.ops.quantized.conv2d`, `linear`), which `cnnlab.models.int8` calls
directly: no deprecated module API, and a state of plain tensors that safetensors saves and a
fresh process loads without pickle (the eager modules' packed weights only pickle).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cnnlab.compress import derive
from cnnlab.errors import CnnlabError
from cnnlab.models import eval_mode
from cnnlab.models.derived import CHAIN_FAMILIES
from cnnlab.models.int8 import ACTIVATION_MAX, Int8Conv2d, Int8Linear, Quantize, int8_layers, quiet_quantized, submodule
from cnnlab.models.registry import get_entry
from cnnlab.run import Run

CALIBRATION_IMAGES = 1024  # PyTorch's tutorials calibrate on a few hundred to a few thousand images


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode BatchNorm that follows `conv` into conv's weight and bias, in place."""
    factor = bn.weight.data / torch.sqrt(bn.running_var + bn.eps)  # (C,)
    bias = conv.bias.data if conv.bias is not None else torch.zeros(conv.out_channels)
    conv.weight.data.mul_(factor.view(-1, 1, 1, 1))
    conv.bias = nn.Parameter(bn.bias.data + (bias - bn.running_mean) * factor)


def plan(model: nn.Sequential) -> dict[str, dict[str, Any]]:
    """The int8 description of `model`'s net, before calibration: conv/linear layers with their
    ReLU fused, folded BatchNorms and fused ReLUs as identities, adaptive max-pools to fill in.
    Folds the BatchNorms of `model` in place (the float model stays equivalent)."""
    leaves = [(n, m) for n, m in model.named_modules() if n.startswith("net.") and not list(m.children())]
    layers: dict[str, dict[str, Any]] = {}
    last = None
    for i, (name, m) in enumerate(leaves):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            j = i + 1
            if isinstance(m, nn.Conv2d) and j < len(leaves) and isinstance(leaves[j][1], nn.BatchNorm2d):
                fold_batchnorm(m, leaves[j][1])
                layers[leaves[j][0]] = {"kind": "identity"}
                j += 1
            relu = j < len(leaves) and isinstance(leaves[j][1], nn.ReLU)
            if relu:
                layers[leaves[j][0]] = {"kind": "identity"}
            layers[name] = {"kind": "conv" if isinstance(m, nn.Conv2d) else "linear", "relu": relu, "float_out": False}
            last = name
        elif isinstance(m, nn.AdaptiveMaxPool2d):
            layers[name] = {"kind": "maxpool", "kernel": None}
        elif isinstance(m, nn.BatchNorm2d) and name not in layers:
            raise CnnlabError(f"{name} is a BatchNorm that follows no convolution; int8 folds each into the convolution before it.")
    if last is None or layers[last]["kind"] != "linear":
        raise CnnlabError("int8 quantization here needs a network that ends in a linear layer (a classifier).")
    layers[last]["float_out"] = True
    for name in layers:  # folded: the float model now skips its BatchNorms too
        if isinstance(submodule(model, name), nn.BatchNorm2d):
            parent, _, child = name.rpartition(".")
            setattr(submodule(model, parent), child, nn.Identity())
    return layers


def calibrate(model: nn.Sequential, layers: dict[str, dict[str, Any]], x: Tensor, batch_size: int = 256) -> dict[str, Tensor]:
    """min/max of the input after Normalize ('normalize') and of each conv/linear output (after
    its fused ReLU) over images x; fills each adaptive max-pool's kernel from its input size."""
    ranges: dict[str, Tensor] = {}
    watched = ["normalize"] + [n for n, layer in layers.items() if layer["kind"] in ("conv", "linear")]

    def observe(name: str):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            if name in layers and layers[name].get("relu"):
                output = output.clamp_min(0)
            now = torch.stack([output.min(), output.max()])
            ranges[name] = now if name not in ranges else torch.stack([ranges[name][0].minimum(now[0]), ranges[name][1].maximum(now[1])])
        return hook

    def kernel(name: str):
        def hook(module: nn.AdaptiveMaxPool2d, inputs: tuple[Tensor, ...]) -> None:
            h, w = inputs[0].shape[-2:]
            oh, ow = (module.output_size, module.output_size) if isinstance(module.output_size, int) else module.output_size
            if h % oh or w % ow:
                raise CnnlabError(f"{name} pools {h}x{w} maps to {oh}x{ow}, not whole windows; uint8 has no adaptive max-pool.")
            layers[name]["kernel"] = [h // oh, w // ow]
        return hook

    handles = [submodule(model, n).register_forward_hook(observe(n)) for n in watched]
    handles += [submodule(model, n).register_forward_pre_hook(kernel(n)) for n, layer in layers.items() if layer["kind"] == "maxpool"]
    try:
        with torch.inference_mode(), eval_mode(model):
            for i in range(0, len(x), batch_size):
                model(x[i : i + batch_size])
    finally:
        for h in handles:
            h.remove()
    return ranges


def grid(low: float, high: float) -> tuple[float, int]:
    """uint8 scale and zero point for values in [low, high] (0 always exactly representable)."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = max((high - low) / ACTIVATION_MAX, 1e-8)
    return scale, int(min(max(round(-low / scale), 0), ACTIVATION_MAX))


def quantize_model(model: nn.Sequential, calibration: Tensor) -> tuple[nn.Sequential, dict[str, dict[str, Any]]]:
    """An int8 copy of `model` (normalize, net), calibrated on images `calibration` (N, C, H, W)
    in [0, 1]; returns it and its description (`cnnlab.models.int8.int8_layers`)."""
    folded = copy.deepcopy(model).eval()
    layers = plan(folded)
    ranges = calibrate(folded, layers, calibration)
    weights = {n: (submodule(folded, n).weight.data, submodule(folded, n).bias) for n, layer in layers.items()
               if layer["kind"] in ("conv", "linear")}
    quantized = int8_layers(folded, layers)
    with torch.no_grad():
        q: Quantize = quantized.quantize  # type: ignore[assignment]
        scale, zero = grid(*ranges["normalize"].tolist())
        q.scale.fill_(scale)
        q.zero_point.fill_(zero)
        q.forget_packed()
        for name, (w, b) in weights.items():
            layer: Int8Conv2d | Int8Linear = submodule(quantized, name)  # type: ignore[assignment]
            w_scale = (w.abs().flatten(1).amax(1) / 127).clamp_min(1e-8)  # symmetric int8 per output channel
            layer.weight.copy_((w / w_scale.view(-1, *[1] * (w.ndim - 1))).round().clamp(-128, 127).to(torch.int8))
            layer.weight_scale.copy_(w_scale)
            layer.bias.copy_(b.data if b is not None else torch.zeros(len(w)))
            scale, zero = grid(*ranges[name].tolist())
            layer.scale.fill_(scale)
            layer.zero_point.fill_(zero)
            layer.forget_packed()
    return quantized.eval(), layers


def quantize_run(parent: Run, out: str | Path, dtype: str = "int8", calibration: int = CALIBRATION_IMAGES,
                 overwrite: bool = False) -> Run:
    """A new run: `parent`'s model quantized to int8 on `calibration` training images (the first
    ones of the training split, in its stored order), scored on the test split."""
    parent.require_classifier("int8 quantization")
    if dtype != "int8":
        raise CnnlabError(f"--quantize supports int8, got '{dtype}'.")
    if calibration < 1:
        raise CnnlabError(f"--calibration needs at least 1 training image, got {calibration}.")
    if get_entry(parent.config.model).family not in CHAIN_FAMILIES or parent.config.dp:
        raise CnnlabError(f"int8 here runs chains of layers (lenet5, fastnet, vgg, alexnet, mlp), and {parent.config.model} "
                          "is not one (skip connections add uint8 tensors, or DP-SGD's GroupNorm has no int8 kernel).")
    if parent.provenance.get("derived", {}).get("method") == "quantize":
        raise CnnlabError(f"{parent.path} is already int8.")
    data = parent.load_data()
    with quiet_quantized():
        model, layers = quantize_model(parent.model, data.train.x[:calibration])
    derived = {"method": "quantize", "dtype": "int8", "calibration_images": min(calibration, len(data.train)),
               "layers": layers}
    run = derive.start(parent, out, derived, model, data, overwrite)
    return derive.finish_untrained(run, data)
