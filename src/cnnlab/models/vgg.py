"""VGG: depth from nothing but 3x3 convolutions (Simonyan & Zisserman 2015).

A stack of 3x3 convolutions, doubling the channels (64 -> 512) after each of five 2x2
max-pools; two stacked 3x3s see as far as one 5x5 with fewer weights and one more ReLU. The
configurations are the paper's table 1: A is VGG-11, D is VGG-16. Two layouts:

- ImageNet layout (both sides >= 64 px): torchvision's (no BatchNorm, a 7x7 grid, three
  fully connected layers 4,096 wide), with the same module names and indices, so
  `load_state_dict(torchvision.models.vgg16().state_dict())` loads and the outputs agree.
- small-image layout (sides under 64 px), the usual CIFAR VGG: BatchNorm after every
  convolution (so the deep plain stack trains from scratch, without the paper's staged
  initialisation), pools in ceil mode (28 px -> 14, 7, 4, 2, 1 instead of vanishing at the
  fifth pool), a global average pool and a single Linear(512, classes).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from cnnlab.models.registry import ModelSpec, register_model
from cnnlab.models.shell import ConvShell

# The paper's table 1: output channels of each 3x3 convolution, "M" a 2x2 max-pool.
CONFIGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}
# The ImageNet layout needs 32 px to survive its five pools; from 64 on it is used (at 64 the
# last map is 2x2), below the small layout.
IMAGENET_MIN_SIDE = 64


class VGG(ConvShell):
    """features (3x3 convolutions and pools) -> avgpool to a fixed grid -> classifier, with He
    initialisation. x: (N, C, H, W) -> logits (N, num_classes).
    """

    def __init__(self, features: nn.Sequential, grid: int, classifier: nn.Sequential) -> None:
        super().__init__(features, grid, classifier)
        self._init_weights()

    def _init_weights(self) -> None:
        # He et al. 2015 initialisation lets the plain stack train without the paper's trick of
        # starting D from a trained A; the small normal for linears is torchvision's choice.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)


def make_features(
    config: Sequence[int | str], in_channels: int, batch_norm: bool, ceil_mode: bool
) -> nn.Sequential:
    """One flat Sequential, so the indices match torchvision's state-dict keys.

    `ceil_mode`: an odd side rounds up at each pool, so five pools never take a side to 0.
    """
    layers: list[nn.Module] = []
    channels = in_channels
    for v in config:
        if v == "M":
            layers.append(nn.MaxPool2d(2, ceil_mode=ceil_mode))
            continue
        layers.append(nn.Conv2d(channels, int(v), kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(v)))
        layers.append(nn.ReLU(inplace=True))
        channels = int(v)
    return nn.Sequential(*layers)


def imagenet_vgg(config: Sequence[int | str], in_channels: int, num_classes: int) -> VGG:
    classifier = nn.Sequential(
        nn.Linear(512 * 7 * 7, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(4096, num_classes),
    )
    features = make_features(config, in_channels, batch_norm=False, ceil_mode=False)
    return VGG(features, grid=7, classifier=classifier)


def small_vgg(config: Sequence[int | str], in_channels: int, num_classes: int) -> VGG:
    features = make_features(config, in_channels, batch_norm=True, ceil_mode=True)
    return VGG(features, grid=1, classifier=nn.Sequential(nn.Linear(512, num_classes)))


def _build(config: str, spec: ModelSpec) -> VGG:
    c, h, w = spec.input_shape
    if min(h, w) >= IMAGENET_MIN_SIDE:
        return imagenet_vgg(CONFIGS[config], c, spec.num_classes)
    return small_vgg(CONFIGS[config], c, spec.num_classes)


PAPER = "Simonyan & Zisserman 2015, Very Deep Convolutional Networks for Large-Scale Image Recognition"


@register_model(
    family="vgg",
    paper=PAPER,
    reference_input=(3, 224, 224),
    reference_classes=1000,
    reference_params=132_863_336,
)
def vgg11(spec: ModelSpec) -> nn.Module:
    """VGG-11, configuration A (Simonyan & Zisserman 2015): 8 convolutions + 3 linears.

    132,863,336 parameters at 3x224x224 -> 1000. Both sides >= 64 px: the ImageNet layout,
    state-dict compatible with torchvision.models.vgg11. Either side under 64 px: the small
    layout with BatchNorm and one Linear(512, classes) (9,231,114 parameters at 3x32x32 -> 10).
    Any size works: the small layout's pools round up.
    """
    return _build("A", spec)


@register_model(
    family="vgg",
    paper=PAPER,
    reference_input=(3, 224, 224),
    reference_classes=1000,
    reference_params=138_357_544,
)
def vgg16(spec: ModelSpec) -> nn.Module:
    """VGG-16, configuration D (Simonyan & Zisserman 2015): 13 convolutions + 3 linears.

    138,357,544 parameters at 3x224x224 -> 1000. Both sides >= 64 px: the ImageNet layout,
    state-dict compatible with torchvision.models.vgg16. Either side under 64 px: the small
    layout with BatchNorm and one Linear(512, classes) (14,728,266 parameters at 3x32x32 -> 10).
    Any size works: the small layout's pools round up.
    """
    return _build("D", spec)
