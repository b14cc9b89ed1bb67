"""The shell AlexNet and VGG share: features -> average-pool to a fixed grid -> classifier.

The module names (`features`, `avgpool`, `classifier`) are torchvision's, so the ImageNet
layouts load torchvision's state dicts, and saved runs keep their keys.
"""

from __future__ import annotations

from torch import Tensor, nn


class ConvShell(nn.Module):
    """features (convolutions and pools) -> avgpool to a grid x grid map -> classifier.

    x: (N, C, H, W) -> logits (N, num_classes).
    """

    def __init__(self, features: nn.Sequential, grid: int, classifier: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        # A fixed grid before the classifier makes the linear layers independent of the image size.
        self.avgpool = nn.AdaptiveAvgPool2d((grid, grid))
        self.classifier = classifier

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))
