"""A small fully connected network on 2-D points, trained while it reports.

The user chooses (hyperparameters): the hidden layers and their neurons (none = logistic
regression, a single straight boundary), the activation, the optimizer, its learning rate,
the batch size and the epochs. The network learns (parameters): each layer's weights and
biases. `train_frames` yields, every few epochs, the losses, the accuracies and the
probability of class 1 on a grid: the decision boundary as it moves.

A training is bounded by its number of optimizer steps, epochs x (train points / batch size),
not by its epochs alone: 2,000 epochs of 1,000 points one at a time are two million steps,
half an hour of one core, which a page left open should not be able to ask of a server.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.errors import CnnlabError, unknown_name
from cnnlab.serve.playground.data2d import make_points, split

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "linear": nn.Identity}
OPTIMIZERS = ("adam", "sgd", "momentum")
GRID = 40  # the boundary is drawn from GRID x GRID probabilities
EXTENT = 1.5  # the grid covers [-EXTENT, EXTENT]^2, a little beyond the data
FRAMES = 40  # about this many updates per training, whatever the number of epochs
MAX_LAYERS, MAX_NEURONS, MAX_EPOCHS = 6, 32, 2000
# 20,000 steps of the widest net (6 x 32) take about 15 s on one core; the page's defaults are 1,300
MAX_STEPS = 20_000


@dataclass
class PlaygroundConfig:
    """Every choice the user makes; the defaults are TensorFlow Playground's where it has one."""

    dataset: str = "circles"
    n: int = 400
    noise: float = 0.05
    hidden: list[int] = field(default_factory=lambda: [4])  # [] = logistic regression
    activation: str = "tanh"
    optimizer: str = "adam"
    lr: float = 0.03
    batch_size: int = 16
    epochs: int = 100
    seed: int = 0

    def check(self) -> PlaygroundConfig:
        make_points(self.dataset, self.n, self.noise, self.seed)  # checks the data choices
        if len(self.hidden) > MAX_LAYERS or any(not 1 <= h <= MAX_NEURONS for h in self.hidden):
            raise CnnlabError(f"choose at most {MAX_LAYERS} hidden layers of 1 to {MAX_NEURONS} neurons, got {self.hidden}.")
        if self.activation not in ACTIVATIONS:
            raise unknown_name("activation", self.activation, list(ACTIVATIONS))
        if self.optimizer not in OPTIMIZERS:
            raise unknown_name("optimizer", self.optimizer, list(OPTIMIZERS))
        if not 1e-5 <= self.lr <= 10:
            raise CnnlabError(f"the learning rate must be between 0.00001 and 10, got {self.lr}.")
        if not 1 <= self.batch_size <= self.n:
            raise CnnlabError(f"the batch size must be between 1 and the number of points ({self.n}), got {self.batch_size}.")
        if not 1 <= self.epochs <= MAX_EPOCHS:
            raise CnnlabError(f"epochs must be between 1 and {MAX_EPOCHS}, got {self.epochs}.")
        if self.steps > MAX_STEPS:
            raise CnnlabError(
                f"{self.epochs} epochs of {self.n // 2} training points in batches of {self.batch_size} are {self.steps:,} "
                f"steps, over the limit of {MAX_STEPS:,}; choose fewer epochs or a larger batch."
            )
        return self

    @property
    def steps(self) -> int:
        """Optimizer steps the training takes: epochs x batches per epoch (half the points train)."""
        return self.epochs * math.ceil((self.n // 2) / self.batch_size)


def build_net(hidden: list[int], activation: str) -> nn.Sequential:
    """2 inputs -> hidden layers -> 1 logit. No hidden layer: logistic regression."""
    layers: list[nn.Module] = []
    width = 2
    for h in hidden:
        layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
        width = h
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def _optimizer(config: PlaygroundConfig, params) -> torch.optim.Optimizer:  # noqa: ANN001
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr)
    return torch.optim.SGD(params, lr=config.lr, momentum=0.9 if config.optimizer == "momentum" else 0.0)


@torch.no_grad()
def _measure(net: nn.Module, x: Tensor, y: Tensor) -> tuple[float, float]:
    logits = net(x)[:, 0]
    return float(F.binary_cross_entropy_with_logits(logits, y)), float(((logits > 0).float() == y).float().mean())


@torch.no_grad()
def _grid(net: nn.Module) -> list[float]:
    axis = torch.linspace(-EXTENT, EXTENT, GRID)
    yy, xx = torch.meshgrid(-axis, axis, indexing="ij")  # row 0 is the top of the picture
    p = torch.sigmoid(net(torch.stack([xx.flatten(), yy.flatten()], 1)))[:, 0]
    return torch.round(p.double(), decimals=3).tolist()  # float64: 0.1, not 0.10000000149 in the JSON


def learned(net: nn.Sequential) -> list[dict[str, Any]]:
    """What training found: every Linear layer's weights and biases."""
    out = []
    for k, m in enumerate(mm for mm in net if isinstance(mm, nn.Linear)):
        out.append({"layer": k + 1, "inputs": m.in_features, "neurons": m.out_features,
                    "weights": torch.round(m.weight.detach().double(), decimals=3).tolist(),
                    "biases": torch.round(m.bias.detach().double(), decimals=3).tolist(), "count": m.weight.numel() + m.bias.numel()})
    return out


def train_frames(config: PlaygroundConfig, stop: threading.Event | None = None) -> Iterator[dict[str, Any]]:
    """Train and yield about FRAMES progress frames, the last with `done` and the panel of
    learned parameters vs chosen hyperparameters. Once `stop` is set (the client left, the
    server is stopping), the training ends at its next step, without a last frame."""
    config.check()
    torch.manual_seed(config.seed)
    x, y = make_points(config.dataset, config.n, config.noise, config.seed)
    (x_train, y_train), (x_test, y_test) = split(x, y)
    net = build_net(config.hidden, config.activation)
    opt = _optimizer(config, net.parameters())
    g = torch.Generator().manual_seed(config.seed)
    every = max(1, config.epochs // FRAMES)
    for epoch in range(1, config.epochs + 1):
        for idx in torch.randperm(len(x_train), generator=g).split(config.batch_size):
            if stop is not None and stop.is_set():
                return
            loss = F.binary_cross_entropy_with_logits(net(x_train[idx])[:, 0], y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch % every == 0 or epoch == config.epochs:
            train_loss, train_acc = _measure(net, x_train, y_train)
            test_loss, test_acc = _measure(net, x_test, y_test)
            frame = {"epoch": epoch, "train_loss": round(train_loss, 5), "test_loss": round(test_loss, 5),
                     "train_accuracy": round(train_acc, 4), "test_accuracy": round(test_acc, 4), "grid": _grid(net)}
            if epoch == config.epochs:
                params = learned(net)
                frame |= {"done": True, "learned": params, "learned_count": sum(p["count"] for p in params),
                          "chosen": asdict(config)}
            yield frame
