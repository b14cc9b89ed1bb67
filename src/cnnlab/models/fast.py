"""FastNet: a small BatchNorm CNN chosen for time-to-accuracy, the model of `--recipe fast`.

The shape follows the speed-run networks (Page 2018, "How to train your ResNet"; Jordan 2024,
airbench): stages of (3x3 convolution, BatchNorm, ReLU), a max-pool between stages, a global
max-pool and one linear layer. No residual connections, no bias before a BatchNorm, no
dropout: every FLOP goes into convolutions. The logits are scaled by 1/8 (airbench scales by
1/9): a global max of ReLU outputs is large and all positive, and unscaled the recipe's peak
lr of 0.2 diverges in the first steps on small data (the 1,438 digits: 0.69 test accuracy
unscaled, 0.98 scaled).

`fastnet` is sized for a 2-core CPU (measured on Fashion-MNIST, docs/benchmarks.md): one
convolution of 16 at full resolution, then stages of two at 32 and 64 channels, each entered
through a pool (a quarter of the cost of pooling after), and a classifier that reads the whole
7x7x64 final map: where a feature fired matters for clothes (+0.4 points over a global max
after 3 epochs). Folding 2x2 pixel blocks into channels first (space-to-depth), so nothing runs
at full resolution, was 38% faster per epoch but lost 1.4 points after 4 epochs: the fine
detail at 28x28 is worth its cost. `fastnet-wide` is the GPU-sized variant: airbench's widths
64/256/256, pooling after each stage's first convolution, a global max; `--recipe fast` picks
it when CUDA is present.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models.registry import ModelSpec, register_model


def conv_bn(c_in: int, c_out: int) -> list[tuple[str, nn.Module]]:
    """3x3 convolution (padding 1, no bias: BatchNorm's shift replaces it), BatchNorm, ReLU."""
    return [
        ("conv", nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)),
        ("bn", nn.BatchNorm2d(c_out)),
        ("relu", nn.ReLU(inplace=True)),
    ]


class FastNet(nn.Module):
    """Stages of (conv, bn, relu) with a 2x2 max-pool between stages -> max-pool to `head` ->
    linear, logits x 1/8.

    x: (N, C, H, W) -> logits (N, num_classes). `stages` lists each stage's convolution widths.
    `pool_first=False` pools after the first convolution of a stage instead (airbench's order).
    `head` (1, 1) is a global max; the final map's own size keeps where each feature fired.
    """

    def __init__(self, in_channels: int, num_classes: int, stages: Sequence[Sequence[int]],
                 pool_first: bool = True, head: tuple[int, int] = (1, 1)) -> None:
        super().__init__()
        layers: list[tuple[str, nn.Module]] = []
        c = in_channels
        for s, widths in enumerate(stages):
            for d, width in enumerate(widths, start=1):
                block = [(f"stage{s}_{n}{d}", m) for n, m in conv_bn(c, width)]
                if s > 0 and d == 1:  # halve the side on entering a stage
                    block.insert(0 if pool_first else 1, (f"stage{s}_pool", nn.MaxPool2d(2)))
                layers += block
                c = width
        self.features = nn.Sequential(OrderedDict(layers))
        self.pool = nn.AdaptiveMaxPool2d(head)  # (1, 1): a global max; the final map's size: keep where
        self.classifier = nn.Linear(c * head[0] * head[1], num_classes)
        self.logit_scale = 1 / 8

    def forward(self, x):  # (N, C, H, W) -> (N, num_classes)
        return self.classifier(self.pool(self.features(x)).flatten(1)) * self.logit_scale


def _build(spec: ModelSpec, name: str, stages: Sequence[Sequence[int]], pool_first: bool, keep_where: bool) -> FastNet:
    halvings = len(stages) - 1
    smallest = 2**halvings
    if min(spec.height, spec.width) < smallest:
        raise CnnlabError(
            f"{name} halves the image {halvings} times and needs at least "
            f"{smallest}x{smallest} pixels, got {spec.height}x{spec.width}."
        )
    head = (spec.height // smallest, spec.width // smallest) if keep_where else (1, 1)
    return FastNet(spec.channels, spec.num_classes, stages, pool_first, head)


@register_model(
    family="fast",
    paper="cnnlab's speed recipe after Page 2018 (How to train your ResNet) and Jordan 2024 (airbench)",
    reference_input=(1, 28, 28),
    reference_classes=10,
    reference_params=101_050,
)
def fastnet(spec: ModelSpec) -> nn.Module:
    """CPU-sized: a stem of 16 at full resolution, 2 convolutions of 32 at half the side, 2 of 64
    at a quarter; the classifier reads the whole final map (7x7x64 at 28x28), not its global max."""
    return _build(spec, "fastnet", stages=((16,), (32, 32), (64, 64)), pool_first=True, keep_where=True)


@register_model(
    family="fast",
    paper="airbench's network (Jordan 2024, 94% on CIFAR-10 in 3.29 s on an A100), in cnnlab's layers",
    reference_input=(3, 32, 32),
    reference_classes=10,
    reference_params=1_978_026,
    name="fastnet-wide",
)
def fastnet_wide(spec: ModelSpec) -> nn.Module:
    """GPU-sized: a stem of 32 at full resolution, then stages of 2 convolutions at widths 64,
    256, 256, each pooling after its first convolution (airbench's block)."""
    return _build(spec, "fastnet-wide", stages=((32,), (64, 64), (256, 256), (256, 256)), pool_first=False,
                  keep_where=False)
