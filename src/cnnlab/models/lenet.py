"""LeNet-5: the convolutional network that read cheques (LeCun et al. 1998).

Two convolution + pooling stages extract features, three fully connected layers classify them.
The paper's input is 32x32; MNIST's 28x28 digits get 2 pixels of zero padding in the first
convolution, so every feature map has the size the paper's figure 2 shows (28, 14, 10, 5).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from cnnlab.errors import CnnlabError
from cnnlab.models.registry import ModelSpec, register_model

# The smallest side that leaves the second pool something to pool
# (12 -> conv1, padded, 12 -> pool 6 -> conv2 2 -> pool 1).
MIN_SIDE = 12


class LeNet5(nn.Module):
    """conv 5x5 (6) -> pool -> conv 5x5 (16) -> pool -> fc 120 -> fc 84 -> fc classes.

    x: (N, C, H, W) -> logits (N, num_classes). `padding` is the first convolution's (rows, cols).
    """

    def __init__(self, in_channels: int, num_classes: int, padding: tuple[int, int]) -> None:
        super().__init__()
        # Named layers, so a summary or a feature-map hook reads "features.conv1", not "features.0".
        self.features = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(in_channels, 6, kernel_size=5, padding=padding),
            relu1=nn.ReLU(inplace=True),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(6, 16, kernel_size=5),
            relu2=nn.ReLU(inplace=True),
            pool2=nn.MaxPool2d(2),
        ))
        # The classifier reads 16 maps of 5x5, as in the paper. From 28 to 35 pixels the maps are
        # already 5x5 and this is the identity; larger maps are averaged down to 5x5 (smaller ones
        # stretched up), so the classifier and the parameter count do not change with the image.
        self.avgpool = nn.AdaptiveAvgPool2d((5, 5))
        self.classifier = nn.Sequential(OrderedDict(
            fc1=nn.Linear(16 * 5 * 5, 120),
            relu3=nn.ReLU(inplace=True),
            fc2=nn.Linear(120, 84),
            relu4=nn.ReLU(inplace=True),
            fc3=nn.Linear(84, num_classes),
        ))

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)  # (N, 16, 5, 5) at 28 or 32 pixels
        x = self.avgpool(x).flatten(1)  # (N, 400)
        return self.classifier(x)


@register_model(
    family="lenet",
    paper="LeCun, Bottou, Bengio & Haffner 1998, Gradient-Based Learning Applied to Document Recognition",
    reference_input=(1, 32, 32),
    reference_classes=10,
    reference_params=61_706,
)
def lenet5(spec: ModelSpec) -> nn.Module:
    """LeNet-5 (LeCun et al. 1998), in its modern form: ReLU and max-pooling.

    The paper used scaled tanh, trainable average pooling ("subsampling"), a C3 wired to only
    some of S2's maps and RBF output units; today's common variant, kept here, uses ReLU,
    max-pooling, full connections and a linear output. 61,706 parameters at 1x32x32 -> 10 and
    at MNIST's 1x28x28 -> 10.

    Input size: a side under 32 pixels gets padding 2 in the first convolution (MNIST's 28x28
    then sees the paper's 32x32 feature maps); a side of 32 or more gets none. The last maps
    are adaptive-average-pooled to 5x5 before the classifier, so the count stays 61,706 for
    every size with 1 channel. Sides under 12 pixels raise CnnlabError.
    """
    c, h, w = spec.input_shape
    if min(h, w) < MIN_SIDE:
        raise CnnlabError(
            f"lenet5 needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels (got {h}x{w}); "
            "resize them up, e.g. to MNIST's 28x28."
        )
    padding = (2 if h < 32 else 0, 2 if w < 32 else 0)
    return LeNet5(c, spec.num_classes, padding)
