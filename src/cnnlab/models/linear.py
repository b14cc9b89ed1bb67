"""The baselines a CNN must beat: logistic regression and a multilayer perceptron.

Both see an image as one long vector of C*H*W pixels, so neither knows which pixels are
neighbours; that is the point of the lecture's "MLP vs CNN" comparison. Logistic regression is
an MLP with no hidden layer, so one class holds both.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from cnnlab.models.registry import ModelSpec, register_model


class MLP(nn.Sequential):
    """Flatten -> (Linear -> ReLU) for each hidden width -> Linear to class scores.

    x: (N, C, H, W) -> logits (N, num_classes). A plain Sequential, so the layers are numbered
    in order: logistic regression's one Linear is layer 1, after the Flatten.
    """

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int) -> None:
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)


@register_model(
    family="linear",
    paper="Cox 1958, The Regression Analysis of Binary Sequences (multinomial logistic regression)",
    reference_input=(1, 28, 28),
    reference_classes=10,
    reference_params=7_850,
)
def logistic(spec: ModelSpec) -> nn.Module:
    """Multinomial logistic (softmax) regression: one Linear(C*H*W, classes) on the flat pixels.

    Cox 1958; the softmax comes with the cross-entropy loss. 7,850 parameters on MNIST
    (1x28x28 -> 10): 784 * 10 weights + 10 biases. Any input size works.
    """
    c, h, w = spec.input_shape
    return MLP(c * h * w, hidden=(), num_classes=spec.num_classes)


@register_model(
    family="linear",
    paper="Rumelhart, Hinton & Williams 1986, Learning representations by back-propagating errors",
    reference_input=(1, 28, 28),
    reference_classes=10,
    reference_params=269_322,
)
def mlp(spec: ModelSpec) -> nn.Module:
    """A multilayer perceptron with two hidden layers of 256 ReLU units.

    Rumelhart, Hinton & Williams 1986 (trained by backpropagation). 269,322 parameters on MNIST
    (1x28x28 -> 10): 784*256+256 + 256*256+256 + 256*10+10. Any input size works; the first
    layer grows with C*H*W.
    """
    c, h, w = spec.input_shape
    return MLP(c * h * w, hidden=(256, 256), num_classes=spec.num_classes)
