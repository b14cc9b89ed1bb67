"""ResNet: layers learn a residual F(x) and add it to their input, y = F(x) + x (He et al. 2016).

The shortcut lets the gradient reach early layers unchanged, so depth stops hurting: a plain
56-layer net trains worse than a 20-layer one, a residual 56-layer net better (the paper's
figure 6). One `ResNet` class builds both of the paper's families:

- CIFAR ResNets (section 4.2): `resnet20`, `resnet56` = 6n+2 layers, three stages of n basic
  blocks at 16, 32 and 64 channels, a 3x3 stem, and "option A" shortcuts that add no
  parameters (subsample by 2, append zero channels).
- ImageNet ResNets (table 1): `resnet18` (basic blocks), `resnet50` (bottlenecks), four stages
  at 64-512 channels, a 7x7 stride-2 stem and a max-pool, "option B" shortcuts (a 1x1
  convolution where the shape changes). Module names follow torchvision's, so
  `load_state_dict(torchvision.models.resnet18().state_dict())` loads and the outputs agree.
  Under 64 px the stem would shrink the image 4x before any block, so there it is a 3x3
  stride-1 convolution with no max-pool (the usual CIFAR adaptation).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.models.registry import ModelSpec, register_model

# Below this side the ImageNet stem (/4) leaves too little for four stages; use the small stem.
IMAGENET_MIN_SIDE = 64


class PadShortcut(nn.Module):
    """Option A shortcut: keep every `stride`-th pixel and append zero channels. No parameters.

    x: (N, C, H, W) -> (N, C + extra_channels, ceil(H / stride), ceil(W / stride)), the shape
    a 3x3 convolution with padding 1 and this stride gives.
    """

    def __init__(self, extra_channels: int, stride: int) -> None:
        super().__init__()
        self.extra_channels = extra_channels
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))  # pads dims from the last: W, H, C

    def extra_repr(self) -> str:
        return f"extra_channels={self.extra_channels}, stride={self.stride}"


def projection(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Option B shortcut: a strided 1x1 convolution and BatchNorm (torchvision's `downsample`)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut: relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)).

    The first convolution carries the stride; `downsample` is the shortcut when the shape
    changes (None: the identity).
    """

    expansion = 1  # output channels = width * expansion

    def __init__(self, in_channels: int, width: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        # No conv biases: the BatchNorm right after each convolution has its own shift.
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 (reduce to `width`) -> 3x3 -> 1x1 (expand to 4 * width), plus a shortcut.

    The 3x3 carries the stride (torchvision's "ResNet v1.5"; the paper strides the first 1x1),
    which costs a little compute and gains about 0.5% ImageNet top-1.
    """

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


class ResNet(nn.Module):
    """stem -> stages (layer1, layer2, ...) of residual blocks -> global average pool -> fc.

    x: (N, C, H, W) -> logits (N, num_classes). Each stage after the first halves the side
    with its first block's stride. `large_stem`: the ImageNet 7x7 stride-2 convolution and
    3x3 max-pool (else a 3x3 stride-1 convolution); `pad_shortcuts`: option A (else B).
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        depths: Sequence[int],
        widths: Sequence[int],
        in_channels: int,
        num_classes: int,
        large_stem: bool,
        pad_shortcuts: bool,
    ) -> None:
        super().__init__()
        stem_width = widths[0]
        if large_stem:
            self.conv1 = nn.Conv2d(in_channels, stem_width, kernel_size=7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, stem_width, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if large_stem else nn.Identity()

        channels = stem_width
        self.num_stages = len(depths)
        for i, (depth, width) in enumerate(zip(depths, widths)):
            blocks = []
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                out_channels = width * block.expansion
                downsample: nn.Module | None = None
                if stride != 1 or channels != out_channels:
                    downsample = (
                        PadShortcut(out_channels - channels, stride)
                        if pad_shortcuts
                        else projection(channels, out_channels, stride)
                    )
                blocks.append(block(channels, width, stride, downsample))
                channels = out_channels
            # torchvision's names (layer1 ... layer4) are the state-dict keys.
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # He et al. 2015 initialisation for ReLU networks, as both ResNet papers use.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        x = self.avgpool(x).flatten(1)
        return self.fc(x)


PAPER = "He, Zhang, Ren & Sun 2016, Deep Residual Learning for Image Recognition"


def cifar_resnet(n: int, spec: ModelSpec) -> ResNet:
    """6n+2 layers: the stem, three stages of n basic blocks (2n convolutions each), fc."""
    return ResNet(BasicBlock, [n, n, n], [16, 32, 64], spec.channels, spec.num_classes,
                  large_stem=False, pad_shortcuts=True)


def imagenet_resnet(block: type[BasicBlock | Bottleneck], depths: Sequence[int], spec: ModelSpec) -> ResNet:
    large = min(spec.height, spec.width) >= IMAGENET_MIN_SIDE
    return ResNet(block, depths, [64, 128, 256, 512], spec.channels, spec.num_classes,
                  large_stem=large, pad_shortcuts=False)


@register_model(
    family="resnet",
    paper=PAPER,
    reference_input=(3, 32, 32),
    reference_classes=10,
    reference_params=269_722,
)
def resnet20(spec: ModelSpec) -> nn.Module:
    """ResNet-20 for CIFAR-10 (He et al. 2016, section 4.2, n = 3), option A shortcuts.

    269,722 parameters at 3x32x32 -> 10 (the paper's "0.27M"). One layout for every input
    size: the stem keeps the resolution and the stages halve it twice, any side works.
    """
    return cifar_resnet(3, spec)


@register_model(
    family="resnet",
    paper=PAPER,
    reference_input=(3, 32, 32),
    reference_classes=10,
    reference_params=853_018,
)
def resnet56(spec: ModelSpec) -> nn.Module:
    """ResNet-56 for CIFAR-10 (He et al. 2016, section 4.2, n = 9), option A shortcuts.

    853,018 parameters at 3x32x32 -> 10 (the paper's "0.85M"). One layout for every input
    size, as resnet20.
    """
    return cifar_resnet(9, spec)


@register_model(
    family="resnet",
    paper=PAPER,
    reference_input=(3, 224, 224),
    reference_classes=1000,
    reference_params=11_689_512,
)
def resnet18(spec: ModelSpec) -> nn.Module:
    """ResNet-18 (He et al. 2016, table 1): basic blocks [2, 2, 2, 2], option B shortcuts.

    11,689,512 parameters at 3x224x224 -> 1000. Both sides >= 64 px: the ImageNet stem,
    state-dict compatible with torchvision.models.resnet18. Either side under 64 px: a 3x3
    stride-1 stem and no max-pool (11,173,962 parameters at 3x32x32 -> 10). Any size works.
    """
    return imagenet_resnet(BasicBlock, [2, 2, 2, 2], spec)


@register_model(
    family="resnet",
    paper=PAPER,
    reference_input=(3, 224, 224),
    reference_classes=1000,
    reference_params=25_557_032,
)
def resnet50(spec: ModelSpec) -> nn.Module:
    """ResNet-50 (He et al. 2016, table 1): bottleneck blocks [3, 4, 6, 3], option B shortcuts.

    25,557,032 parameters at 3x224x224 -> 1000. Both sides >= 64 px: the ImageNet stem,
    state-dict compatible with torchvision.models.resnet50 (v1.5: stride on the 3x3). Either
    side under 64 px: a 3x3 stride-1 stem and no max-pool (23,520,842 parameters at
    3x32x32 -> 10). Any size works.
    """
    return imagenet_resnet(Bottleneck, [3, 4, 6, 3], spec)
