"""What the CNN explorer shows: every layer's feature maps for one input, and one output cell
of a convolution worked out as the lecture does it by hand (Wang et al. 2020, CNN Explainer,
draws the same columns of maps; here any run's model can be explored, not one fixed net).

A cell (i, j) of output channel k is

    out[k, i, j] = bias[k] + sum_c sum_(u,v) window_c[u, v] * kernel[k, c, u, v]

where window_c is the kh x kw patch of input channel c (zero padded) under the kernel.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.errors import CnnlabError
from cnnlab.models import first_layer, recording
from cnnlab.scratch.conv import window
from cnnlab.summary import chosen

MAX_MAPS = 16  # per layer: enough to see what a layer does; VGG's 512 would be megabytes of JSON
MAX_LAYERS = 40
MAX_NUMBERS = 400_000  # in one answer, about 3 MB of JSON: LeNet-5's columns hold 27,000; a 224x224 VGG's would hold 30 million


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _rounded(t: Tensor, digits: int = 4) -> list:
    return torch.round(t.double(), decimals=digits).tolist()


def first_conv(model: nn.Module) -> tuple[str, nn.Module]:
    """The model's first nn.Conv2d, in the order its modules are defined."""
    return first_layer(model, nn.Conv2d, hint="; the explorer works on CNNs (try lenet5)")


@torch.no_grad()
def feature_maps(model: nn.Module, x: Tensor, max_maps: int = MAX_MAPS, max_numbers: int = MAX_NUMBERS) -> dict[str, Any]:
    """Columns of the explorer for x (1, C, H, W): the input, then every layer whose output is
    a stack of maps (conv, ReLU, pool, ...), then the class probabilities (None when the
    model's output is not one score per class).

    At most `max_maps` maps per layer and `max_numbers` numbers in all: columns stop when the
    next would pass it, and `truncated` says so. Maps are copied when recorded: LeNet's ReLU
    works in place and would otherwise overwrite the convolution's output with its own.
    """
    leaves = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
    with recording(leaves, copy=True) as outputs:
        out = model(x)
    probs = _rounded(out.softmax(1)[0]) if isinstance(out, Tensor) and out.ndim == 2 else None
    conv_name, _ = first_conv(model)
    budget = max_numbers
    columns: list[dict[str, Any]] = []
    truncated = False
    for name, m, maps in [("input", None, x), *((n, mm, outputs.get(n)) for n, mm in leaves)]:
        if not isinstance(maps, Tensor) or maps.ndim != 4:
            continue
        count = min(max_maps, maps.shape[1], budget // (maps.shape[2] * maps.shape[3]))
        if count == 0 or len(columns) > MAX_LAYERS:
            truncated = True
            break
        budget -= count * maps.shape[2] * maps.shape[3]
        columns.append({
            "name": name, "type": "input" if m is None else type(m).__name__, "chosen": "" if m is None else chosen(m),
            "shape": list(maps.shape[1:]), "maps": _rounded(maps[0, :count]), "first_conv": name == conv_name,
        })
    return {"columns": columns, "probabilities": probs, "first_conv": conv_name, "truncated": truncated}


def conv_cell(
    x: Tensor, weight: Tensor, bias: float, i: int, j: int,
    stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1,
) -> dict[str, Any]:
    """Output cell (i, j) of one output channel, worked by hand.

    x: (C, H, W) the convolution's input; weight: (C, kh, kw) that channel's kernels.
    Returns per input channel the window, the kernel, their element-wise products and its sum,
    then the bias and the total, which equals conv2d's output at (i, j).
    """
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    c, h, w = x.shape
    kh, kw = weight.shape[-2:]
    out_h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if not (0 <= i < out_h and 0 <= j < out_w):
        raise CnnlabError(f"cell ({i}, {j}) is outside the {out_h}x{out_w} output; rows and columns start at 0.")
    padded = F.pad(x, (pw, pw, ph, ph))  # zeros around, as the lecture's padding 1
    cells = window(padded, (kh, kw), (i, j), (sh, sw), (dh, dw))  # (C, kh, kw)
    products = cells * weight
    sums = products.sum(dim=(1, 2))  # (C,)
    return {
        "cell": [i, j], "output_size": [out_h, out_w],
        "top_left": [i * sh - ph, j * sw - pw],  # where the window starts in the unpadded input (may be < 0)
        "window": _rounded(cells), "kernel": _rounded(weight), "products": _rounded(products),
        "sums": _rounded(sums), "bias": round(float(bias), 4), "total": round(float(sums.sum()) + float(bias), 4),
    }


def _lecture() -> tuple[Tensor, Tensor]:
    """The lecture's image (3, 5, 5) and filter (3, 3, 3), float64, from its worked example."""
    from cnnlab.inside.conv import LECTURE_IMAGE, LECTURE_KERNEL

    return torch.from_numpy(LECTURE_IMAGE).double(), torch.from_numpy(LECTURE_KERNEL).double()


def lecture_example() -> dict[str, Any]:
    """The lecture's 5x5x3 image, its three kernels, bias 1, padding 1, and the whole 5x5 output map."""
    from cnnlab.inside.conv import LECTURE_BIAS, LECTURE_CHANNELS, LECTURE_PADDING

    image, kernel = _lecture()
    out = F.conv2d(image[None], kernel[None], torch.tensor([LECTURE_BIAS], dtype=torch.float64), padding=LECTURE_PADDING)[0]
    return {
        "channels": list(LECTURE_CHANNELS), "image": _rounded(image), "kernel": _rounded(kernel),
        "bias": LECTURE_BIAS, "padding": LECTURE_PADDING, "stride": 1, "output": _rounded(out),  # output (1, 5, 5)
    }


def lecture_cell(i: int, j: int) -> dict[str, Any]:
    from cnnlab.inside.conv import LECTURE_BIAS, LECTURE_CHANNELS, LECTURE_PADDING

    image, kernel = _lecture()
    return {**conv_cell(image, kernel, LECTURE_BIAS, i, j, 1, LECTURE_PADDING), "channels": list(LECTURE_CHANNELS)}


@torch.no_grad()
def model_cell(model: nn.Module, x: Tensor, channel: int, i: int, j: int) -> dict[str, Any]:
    """Cell (i, j) of output `channel` of the model's first convolution, for x (1, C, H, W).

    The convolution's input is what reaches it: for cnnlab models the pixels after the model's
    own Normalize layer, so the numbers are standardised values, not 0-255.
    """
    name, conv = first_conv(model)
    if isinstance(conv.padding, str) or conv.groups != 1 or conv.padding_mode != "zeros":
        raise CnnlabError(
            f"{name} uses padding '{conv.padding}'/groups {conv.groups}; the explorer works out plain zero-padded convolutions only."
        )
    if not 0 <= channel < conv.out_channels:
        raise CnnlabError(f"{name} has output channels 0 to {conv.out_channels - 1}, not {channel}.")
    # copies: LeNet's in-place ReLU would otherwise overwrite the output with its own
    with recording([(name, conv)], inputs=True, copy=True) as taken, recording([(name, conv)], copy=True) as given:
        model(x)
    bias = float(conv.bias[channel]) if conv.bias is not None else 0.0
    cell = conv_cell(taken[name][0].double(), conv.weight[channel].double(), bias, i, j, conv.stride, conv.padding, conv.dilation)
    channels = ["R", "G", "B"] if conv.in_channels == 3 else [f"in {c}" for c in range(conv.in_channels)]
    return {**cell, "layer": name, "channel": channel, "channels": channels,
            "conv2d": round(float(given[name][0, channel, i, j]), 4)}
