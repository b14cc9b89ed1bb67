"""Stochastic gradient descent with momentum, the update torch.optim.SGD makes.

    g = grad + weight_decay * p
    v = momentum * v + g
    p = p - lr * v

(Polyak 1964's heavy ball, in the form of Sutskever et al. 2013 / torch without dampening.)
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class SGD:
    def __init__(self, params: Iterable[tuple[np.ndarray, np.ndarray]], lr: float, momentum: float = 0.9,
                 weight_decay: float = 0.0) -> None:
        self.pairs = list(params)  # (parameter, its gradient), updated in place
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.velocity = [np.zeros_like(p) for p, _ in self.pairs]

    def step(self) -> None:
        for (p, grad), v in zip(self.pairs, self.velocity):
            g = grad + self.weight_decay * p if self.weight_decay else grad
            v *= self.momentum
            v += g
            p -= self.lr * v
