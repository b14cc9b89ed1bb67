"""A network as a list of layers, and LeNet-5 built from the scratch layers."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from cnnlab.scratch.conv import Conv2d, output_side
from cnnlab.scratch.layers import Flatten, Linear, MaxPool2d, ReLU


class Sequential:
    """Layers by name, applied in order; backward runs them in reverse (the chain rule)."""

    def __init__(self, **layers: object) -> None:
        self.layers = dict(layers)

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        for layer in reversed(self.layers.values()):
            dout = layer.backward(dout)
        return dout

    def parameters(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """(name, parameter, gradient) for every learned array, e.g. ('conv1.weight', w, dw)."""
        for lname, layer in self.layers.items():
            for pname, p in layer.params.items():
                yield f"{lname}.{pname}", p, layer.grads[pname]

    def num_parameters(self) -> int:
        return sum(p.size for _, p, _ in self.parameters())


def lenet5(in_channels: int = 1, side: int = 28, num_classes: int = 10, impl: str = "im2col", seed: int = 0,
           dtype: type = np.float32) -> Sequential:
    """LeNet-5 (LeCun et al. 1998) in the modern form `cnnlab.models.lenet5` uses: ReLU, max-pool.

    conv 5x5 (6) -> pool 2 -> conv 5x5 (16) -> pool 2 -> fc 120 -> fc 84 -> fc classes; sides
    under 32 get padding 2 in the first convolution, so 28x28 gives the paper's 16x5x5 maps and
    61,706 parameters for 10 classes. Layer names match the torch model's (conv1, fc1, ...).
    """
    rng = np.random.default_rng(seed)
    p = 2 if side < 32 else 0
    last = output_side(output_side(side, 5, 1, p) // 2, 5, 1, 0) // 2  # 28 -> 28 -> 14 -> 10 -> 5
    return Sequential(
        conv1=Conv2d(in_channels, 6, 5, padding=p, impl=impl, rng=rng, dtype=dtype),
        relu1=ReLU(),
        pool1=MaxPool2d(2),
        conv2=Conv2d(6, 16, 5, impl=impl, rng=rng, dtype=dtype),
        relu2=ReLU(),
        pool2=MaxPool2d(2),
        flatten=Flatten(),
        fc1=Linear(16 * last * last, 120, rng=rng, dtype=dtype),
        relu3=ReLU(),
        fc2=Linear(120, 84, rng=rng, dtype=dtype),
        relu4=ReLU(),
        fc3=Linear(84, num_classes, rng=rng, dtype=dtype),
    )
