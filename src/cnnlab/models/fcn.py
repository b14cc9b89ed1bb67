"""Fully convolutional networks for labelling every pixel, with and without DAG-RNN context.

`fcn`: a small fully convolutional net (Long, Shelhamer & Darrell 2015, "Fully Convolutional
Networks for Semantic Segmentation", CVPR). Four stages of two 3x3 convolutions each, a 2x2
max-pool between stages (strides 1, 2, 4, 8); every stage scores each class with a 1x1
convolution, and the scores are fused from the coarsest up, as in the paper's skip
architecture (FCN-32s -> 16s -> 8s), here down to stride 1: upsample the coarse scores 2x,
add the finer stage's scores, repeat. Coarse stages say *what*, fine ones *where*.

`fcn-dagrnn`: the same net with a DAG-RNN context module on the stride-8 features (Shuai,
Zuo, Wang & Wang 2016, "DAG-Recurrent Neural Networks for Scene Labeling", CVPR). The image
grid, a graph with cycles, is replaced by four directed acyclic graphs, one per diagonal
direction (southeast, southwest, northeast, northwest). In each, a hidden state runs over
the grid and every cell hears its three predecessors, through one matrix W per DAG:

    h_d[v] = relu(U_d x[v] + W_d (h_d[west] + h_d[north] + h_d[north-west]) + b_d)   (southeast d)
    out[v] = relu(x[v] + BN(sum over the four DAGs of V_d h_d[v]))

so every cell's output depends on the whole feature map: the context a local view lacks.
The paper classifies the DAG-RNN's outputs; here they are added to the local features through
a BatchNorm whose scale starts at zero (the zero-initialised last BatchNorm of a residual
branch, Goyal et al. 2017): at initialisation `fcn-dagrnn` computes exactly what `fcn`
computes, and the two differ only by context. The BatchNorm is there for stability, measured
on `context-scenes` (3 epochs, default SGD at 0.05, seed 0): without it (V itself starting at
zero) the validation loss jumped to 4.2 at the peak learning rate and the training loss rose
again in the last epoch; with it the loss fell every epoch. The states h grow along a sweep
(at initialisation up to 19 at the far corner of a 12x12 map, where a cell's own input term
has a standard deviation of 0.4), and the BatchNorm keeps what they add on the scale of the
features.

Both output (N, num_classes, H, W) logits at the input's resolution. On `shapes` (96 px,
6 epochs, batch 32, seed 0, one CPU thread, torch 2.14) they reach nearly the same test mIoU,
fcn 0.933 and fcn-dagrnn 0.939, the DAG-RNN costing 36% more CPU time (255 s against 188 s):
every shape there is told apart by its own outline, so context has little to add. On
`context-scenes` (sand and road of one look, told apart only by the water or the buildings
beside them; 4 epochs, batch 32, seeds 0 and 1) context is all: fcn-dagrnn labels sand and road
with IoU 0.99-1.00 where fcn reaches 0.44-0.64, and its test mIoU is 0.73 against 0.58.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.errors import CnnlabError
from cnnlab.models.registry import ModelSpec, register_model

WIDTHS = (16, 32, 64, 128)  # channels of the four stages; the last is at stride 8
HIDDEN = 64  # DAG-RNN hidden units per direction
MIN_SIDE = 8  # three 2x2 pools leave a 1x1 map


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by BatchNorm and ReLU; keeps H and W."""
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        bn1=nn.BatchNorm2d(c_out),
        relu1=nn.ReLU(inplace=True),
        conv2=nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        bn2=nn.BatchNorm2d(c_out),
        relu2=nn.ReLU(inplace=True),
    ))


class DAGRNN(nn.Module):
    """Four directional recurrent sweeps over a feature map (Shuai et al. 2016), added back to it.

    x: (N, C, R, Q) -> (N, C, R, Q). Each DAG is the southeast sweep of a mirrored map (the
    southwest DAG is the southeast one of the left-right mirror, and so on), so one sweep
    computes all four at once, with a weight matrix W per direction.
    """

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.inputs = nn.Conv2d(channels, 4 * hidden, 1)  # U x + b of the four DAGs, at every cell at once
        self.recurrent = nn.Parameter(torch.eye(hidden).repeat(4, 1, 1) / 3)  # W: (4, hidden, hidden)
        self.outputs = nn.Conv2d(4 * hidden, channels, 1, bias=False)  # sum_d V_d h_d; the BatchNorm's shift is c
        self.norm = nn.BatchNorm2d(channels)
        # The identity over 3 predecessors starts each state as the mean of what reached them
        # (the IRNN start of Le et al. 2015); the BatchNorm's scale 0 starts the module as the
        # identity on x (V keeps its random start, or no gradient would reach V or the scale).
        nn.init.zeros_(self.norm.weight)

    def forward(self, x: Tensor) -> Tensor:
        n, _, rows, cols = x.shape
        u = self.inputs(x).view(n, 4, self.hidden, rows, cols).transpose(0, 1)  # (4, N, hidden, R, Q)
        u = torch.stack([u[0], u[1].flip(-1), u[2].flip(-2), u[3].flip(-2, -1)])  # each DAG as a southeast one
        h = southeast_sweep(u, self.recurrent)
        h = torch.stack([h[0], h[1].flip(-1), h[2].flip(-2), h[3].flip(-2, -1)])  # back to the image's frame
        context = self.norm(self.outputs(h.transpose(0, 1).reshape(n, 4 * self.hidden, rows, cols)))
        return F.relu(x + context)


def southeast_sweep(u: Tensor, w: Tensor) -> Tensor:
    """h[i, j] = relu(u[i, j] + W (h[i, j-1] + h[i-1, j] + h[i-1, j-1])), zero outside the map.

    u: (D, N, H, R, Q) input terms of D independent sweeps; w: (D, H, H) -> h like u.
    Cells on one anti-diagonal (i + j = t) do not depend on each other, only on diagonals
    t-1 and t-2, so the sweep takes R + Q - 1 steps, each a batched matrix product, not R * Q.
    """
    d, n, hidden, rows, cols = u.shape
    steps = rows + cols - 1
    # Skew: row i moves i places right, so diagonal t becomes column t. Then the west and north
    # neighbours of a cell sit in column t-1 (rows i and i-1), the north-west one in column t-2 (row i-1).
    skewed = u.new_zeros(d, n, rows, steps, hidden)
    for i in range(rows):
        skewed[:, :, i, i : i + cols] = u[:, :, :, i].transpose(-1, -2)
    inside = torch.zeros(rows, steps, 1, dtype=u.dtype, device=u.device)  # cells of the map, not of the skew's padding
    for i in range(rows):
        inside[i, i : i + cols] = 1
    w_t = w.transpose(-1, -2)
    zero = u.new_zeros(d, n, rows, hidden)
    before, last = zero, zero  # the states of columns t-2 and t-1: (D, N, R, hidden)
    states = []
    for t in range(steps):
        up = F.pad(last, (0, 0, 1, 0))[:, :, :rows]  # row i gets row i-1's state (north)
        up_left = F.pad(before, (0, 0, 1, 0))[:, :, :rows]  # north-west
        heard = (last + up + up_left).reshape(d, n * rows, hidden)
        state = F.relu(skewed[:, :, :, t] + torch.bmm(heard, w_t).view(d, n, rows, hidden)) * inside[:, t]
        states.append(state)
        before, last = last, state
    h = torch.stack(states, 3)  # (D, N, R, steps, hidden)
    return torch.stack([h[:, :, i, i : i + cols] for i in range(rows)], 3).permute(0, 1, 4, 3, 2)  # unskew


class FCN(nn.Module):
    """Encoder of four conv blocks (strides 1, 2, 4, 8), optional context on the deepest one,
    class scores fused from coarse to fine. x: (N, C, H, W) -> logits (N, num_classes, H, W)."""

    def __init__(self, in_channels: int, num_classes: int, context: nn.Module | None = None) -> None:
        super().__init__()
        widths = (in_channels, *WIDTHS)
        self.stages = nn.ModuleList(conv_block(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.pool = nn.MaxPool2d(2)
        self.context = context or nn.Identity()
        self.scores = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in WIDTHS)  # one per stage

    def forward(self, x: Tensor) -> Tensor:
        features = []
        for i, stage in enumerate(self.stages):
            x = stage(x if i == 0 else self.pool(x))
            features.append(x)
        features[-1] = self.context(features[-1])
        out = self.scores[-1](features[-1])  # the coarsest scores, stride 8
        for f, score in zip(reversed(features[:-1]), reversed(self.scores[:-1]), strict=True):
            # bilinear upsampling, as the paper's fixed final layer; to the finer stage's own size,
            # so sides that are not multiples of 8 work too
            out = F.interpolate(out, size=f.shape[-2:], mode="bilinear", align_corners=False) + score(f)
        return out


def _check_side(name: str, spec: ModelSpec) -> None:
    if min(spec.height, spec.width) < MIN_SIDE:
        raise CnnlabError(f"{name} needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels (got {spec.height}x{spec.width}).")


@register_model(
    family="fcn",
    paper="Long, Shelhamer & Darrell 2015, Fully Convolutional Networks for Semantic Segmentation",
    reference_input=(3, 96, 96),
    reference_classes=4,
    reference_params=294_976,
    tasks=("segment",),
)
def fcn(spec: ModelSpec) -> nn.Module:
    """A small FCN with skip connections at every stride (Long et al. 2015).

    294,976 parameters for RGB -> 4 classes (the `shapes` data set), whatever the image size:
    convolutions 3-16-16 | 32-32 | 64-64 | 128-128 (3x3, no bias) 293,040, their BatchNorms 960,
    and the four 1x1 score layers (16 + 32 + 64 + 128 channels -> 4 classes, with bias) 976.
    """
    _check_side("fcn", spec)
    return FCN(spec.channels, spec.num_classes)


@register_model(
    family="fcn",
    paper="Shuai, Zuo, Wang & Wang 2016, DAG-Recurrent Neural Networks for Scene Labeling",
    reference_input=(3, 96, 96),
    reference_classes=4,
    reference_params=377_408,
    name="fcn-dagrnn",
    tasks=("segment",),
)
def fcn_dagrnn(spec: ModelSpec) -> nn.Module:
    """`fcn` with a DAG-RNN context module (64 hidden units per direction) on its stride-8 features
    (Shuai et al. 2016). U: 128 -> 4 x 64 (33,024), W: 4 x 64 x 64 (16,384), V: 4 x 64 -> 128
    (32,768) and its BatchNorm (256): 82,432 more than `fcn`, 377,408 parameters for RGB -> 4 classes.
    """
    _check_side("fcn-dagrnn", spec)
    return FCN(spec.channels, spec.num_classes, context=DAGRNN(WIDTHS[-1], HIDDEN))
