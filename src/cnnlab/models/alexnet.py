"""AlexNet: the network that won ImageNet 2012 and started the deep-learning decade.

Five convolutions (ReLU, max-pooling after the 1st, 2nd and 5th) then three fully connected
layers with dropout. Two layouts share one class:

- ImageNet layout (both sides >= 64 px): torchvision's, with the same module names and indices,
  so `load_state_dict(torchvision.models.alexnet().state_dict())` loads and the outputs agree.
  It is the single-GPU version of Krizhevsky 2014 ("One weird trick...", 64-192-384-256-256
  channels), not the 2012 paper's two-GPU split (96-256-384-384-256).
- small-image layout (sides under 64 px, e.g. CIFAR's 32x32 or MNIST's 28x28): the 11x11
  stride-4 stem would shrink such an image to nothing, so every convolution is 3x3 at stride 1;
  the same channels, 2x2 pools at the same three places, a classifier 1,024 wide, not 4,096.
"""

from __future__ import annotations

from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models.registry import ModelSpec, register_model
from cnnlab.models.shell import ConvShell

# The ImageNet layout needs 63 px (63 -> conv1 15 -> pool 7 -> pool 3 -> pool 1); from 64 on
# it is used, below the small layout.
IMAGENET_MIN_SIDE = 64
# The small layout's three 2x2 pools need 8 px (8 -> 4 -> 2 -> 1).
SMALL_MIN_SIDE = 8


class AlexNet(ConvShell):
    """features (five convolutions) -> avgpool to a fixed grid -> classifier (dropout + linears),
    with PyTorch's default initialisation. x: (N, C, H, W) -> logits (N, num_classes)."""


def _classifier(in_features: int, width: int, num_classes: int) -> nn.Sequential:
    # Dropout before each of the two hidden layers, as in the paper (p = 0.5).
    return nn.Sequential(
        nn.Dropout(0.5),
        nn.Linear(in_features, width),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(width, width),
        nn.ReLU(inplace=True),
        nn.Linear(width, num_classes),
    )


def imagenet_alexnet(in_channels: int, num_classes: int) -> AlexNet:
    """torchvision's layout (indices matter: they are the state-dict keys)."""
    features = nn.Sequential(
        nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),  # overlapping pooling, one of the paper's tricks
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )
    return AlexNet(features, grid=6, classifier=_classifier(256 * 6 * 6, 4096, num_classes))


def small_alexnet(in_channels: int, num_classes: int) -> AlexNet:
    """The same five convolutions at 3x3, stride 1; 2x2 pools; 32 px -> a 4x4 map -> 2x2 grid."""
    features = nn.Sequential(
        nn.Conv2d(in_channels, 64, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 192, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )
    return AlexNet(features, grid=2, classifier=_classifier(256 * 2 * 2, 1024, num_classes))


PAPER = "Krizhevsky, Sutskever & Hinton 2012, ImageNet Classification with Deep Convolutional Neural Networks"


@register_model(
    family="alexnet",
    paper=PAPER,
    reference_input=(3, 224, 224),
    reference_classes=1000,
    reference_params=61_100_840,
)
def alexnet(spec: ModelSpec) -> nn.Module:
    """AlexNet (Krizhevsky et al. 2012), torchvision's single-GPU variant (Krizhevsky 2014).

    61,100,840 parameters at 3x224x224 -> 1000. Both sides >= 64 px: the ImageNet layout,
    state-dict compatible with torchvision.models.alexnet. Either side under 64 px: the
    small-image layout (3x3 convolutions at stride 1, classifier 1,024 wide; 4,361,034
    parameters at 3x32x32 -> 10). Sides under 8 px raise CnnlabError.
    """
    c, h, w = spec.input_shape
    if min(h, w) >= IMAGENET_MIN_SIDE:
        return imagenet_alexnet(c, spec.num_classes)
    if min(h, w) < SMALL_MIN_SIDE:
        raise CnnlabError(
            f"alexnet needs images of at least {SMALL_MIN_SIDE}x{SMALL_MIN_SIDE} pixels (got {h}x{w}); "
            "resize them up, e.g. to CIFAR's 32x32."
        )
    return small_alexnet(c, spec.num_classes)
