"""TracIn: how much each training image pushed a prediction up or down (Pruthi, Liu, Kale &
Sundararajan 2020, "Estimating Training Data Influence by Tracing Gradient Descent", eq. 3).

A gradient step on training image z changes the loss on z' by about -lr * grad l(z) . grad l(z').
Summing this over the checkpoints kept during training (one per epoch, `--keep-checkpoints`),
each weighted by the learning rate that led to it:

    TracInCP(z, z') = sum_c lr_c * grad l(w_c; z) . grad l(w_c; z')

> 0: z is a *proponent* of z' (training on z lowered the loss on z'), < 0: an *opponent*.
Self-influence TracInCP(z, z) = sum_c lr_c |grad l(w_c; z)|^2 is large for images the model
kept having to be pushed towards: rare ones, and mislabelled ones (the paper's sec. 4.1).

The practical choice on a CPU, the paper's own for large models (sec. 3.2): gradients of the
last linear layer only. For logits = W h + b and cross-entropy, grad_W l = (p - onehot(y)) h^T
and grad_b l = p - onehot(y), so with g = p - onehot(y) the dot product of two gradients is
(g . g') (h . h' + 1): one forward pass over the training set per checkpoint, no backward.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.errors import CnnlabError
from cnnlab.files import load_weights, read_weights
from cnnlab.models import eval_mode, last_layer, recording


@dataclass
class Checkpoint:
    path: Path
    epoch: int
    lr: float  # the mean step size of the epoch that ended at these weights


def kept_checkpoints(run_path: Path) -> list[Checkpoint]:
    """The epoch weights `cnnlab train --keep-checkpoints` kept, oldest first."""
    files = sorted((Path(run_path) / "checkpoints").glob("epoch-*.safetensors"))
    if not files:
        raise CnnlabError(
            f"{run_path} kept no epoch checkpoints, which TracIn needs; train it again with --keep-checkpoints."
        )
    out = []
    for f in files:
        _, meta = read_weights(f)
        out.append(Checkpoint(f, int(meta["epoch"]), float(meta["lr"])))
    return out


@dataclass
class LastLayerGrads:
    """Per-image factors of the last layer's loss gradient at one checkpoint."""

    g: Tensor  # (N, K) softmax(logits) - onehot(y): the gradient for the logits
    h: Tensor  # (N, D) the features the last linear layer reads
    bias: bool  # whether that layer has a bias (adds 1 to h . h')

    def dot(self, other: LastLayerGrads) -> Tensor:
        """(N, M) matrix of gradient dot products between these N images and other's M."""
        hh = self.h @ other.h.T + (1.0 if self.bias else 0.0)
        return (self.g @ other.g.T) * hh

    def self_dot(self) -> Tensor:
        """(N,) squared gradient norms: |g|^2 (|h|^2 + 1)."""
        return self.g.pow(2).sum(1) * (self.h.pow(2).sum(1) + (1.0 if self.bias else 0.0))


def last_layer_grads(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1024) -> LastLayerGrads:
    """x: (N, C, H, W) pixels, y: (N,) labels -> the last Linear layer's gradient factors."""
    gs, hs = [], []
    name, linear = last_layer(model, nn.Linear, hint="; TracIn here needs a model ending in nn.Linear")
    with torch.no_grad(), eval_mode(model), recording([(name, linear)], inputs=True) as seen:
        for i in range(0, len(x), batch_size):
            logits = model(x[i : i + batch_size])
            h = seen[name]  # (N, D): what the last linear layer read
            if h.shape[0] != logits.shape[0] or h.ndim != 2:
                raise CnnlabError(
                    f"layer '{name}' is not the model's output layer; TracIn here needs a model ending in nn.Linear."
                )
            gs.append(logits.softmax(1) - F.one_hot(y[i : i + batch_size], logits.shape[1]).float())
            hs.append(h.float())
    return LastLayerGrads(torch.cat(gs), torch.cat(hs), linear.bias is not None)


def _load(model: nn.Module, checkpoint: Checkpoint) -> None:
    state, _ = read_weights(checkpoint.path)
    load_weights(model, state, str(checkpoint.path))


def self_influence(model: nn.Module, checkpoints: list[Checkpoint], x: Tensor, y: Tensor) -> Tensor:
    """(N,) TracInCP(z, z) of each training image (x, y), for `model`'s architecture (its
    own weights are left as they are: each checkpoint is loaded into a copy)."""
    model = copy.deepcopy(model)
    total = torch.zeros(len(x), dtype=torch.float64)
    for ck in checkpoints:
        _load(model, ck)
        total += ck.lr * last_layer_grads(model, x, y).self_dot().double()
    return total


def influence(
    model: nn.Module, checkpoints: list[Checkpoint], x_train: Tensor, y_train: Tensor, x: Tensor, y: Tensor
) -> Tensor:
    """(M, N) TracInCP of each training image (N) on each test image (M, labelled y: the
    true class, or the predicted one to explain a prediction)."""
    model = copy.deepcopy(model)
    total = torch.zeros(len(x), len(x_train), dtype=torch.float64)
    for ck in checkpoints:
        _load(model, ck)
        train = last_layer_grads(model, x_train, y_train)
        test = last_layer_grads(model, x, y)
        total += ck.lr * test.dot(train).double()
    return total
