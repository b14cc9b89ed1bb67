"""Train a scratch network: the same loop as `cnnlab.training.fit`, in NumPy.

Shuffle, slice a batch, forward, softmax cross-entropy, backward, SGD step; validate at each
epoch end; test at the end. The learning rate follows a cosine from `lr` to 0 (Loshchilov &
Hutter 2017, SGDR), which makes the last epoch's weights the settled ones.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnlab.data import Dataset
from cnnlab.errors import CnnlabError
from cnnlab.scratch.loss import softmax_cross_entropy
from cnnlab.scratch.net import Sequential, lenet5
from cnnlab.scratch.optim import SGD


@dataclass
class ScratchResult:
    test_acc: float
    test_loss: float
    seconds: float
    parameters: int
    epochs: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"test_acc": self.test_acc, "test_loss": self.test_loss, "seconds": self.seconds,
                "parameters": self.parameters, "epochs": self.epochs}


def evaluate(net: Sequential, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> tuple[float, float]:
    """Mean loss and accuracy of `net` on standardised x (N, C, H, W)."""
    loss_sum, correct = 0.0, 0
    for i in range(0, len(y), batch_size):
        logits = net.forward(x[i : i + batch_size])
        loss, _ = softmax_cross_entropy(logits, y[i : i + batch_size])
        loss_sum += loss * len(logits)
        correct += int((logits.argmax(1) == y[i : i + batch_size]).sum())
    return loss_sum / len(y), correct / len(y)


def train_scratch(
    data: Dataset,
    epochs: int = 8,
    batch_size: int = 32,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    seed: int = 0,
    impl: str = "im2col",
    quiet: bool = False,
) -> tuple[Sequential, ScratchResult]:
    """Train the NumPy LeNet-5 on `data` (pixels standardised by the training mean and std)."""
    # LeNet-5's matrices at batch 32 are small: OpenBLAS threads cost more than they save, and
    # on a busy machine far more (one digits epoch: 3.3 s on 1 thread, 22 s on 2, measured on
    # the shared 2-core machine). threadpoolctl comes with scikit-learn.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _train(data, epochs, batch_size, lr, momentum, weight_decay, seed, impl, quiet)


def _train(data: Dataset, epochs: int, batch_size: int, lr: float, momentum: float, weight_decay: float, seed: int,
           impl: str, quiet: bool) -> tuple[Sequential, ScratchResult]:
    from cnnlab.training.progress import TrainingProgress

    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise CnnlabError("--epochs and --batch-size must be at least 1 and --lr above 0.")
    if impl not in ("im2col", "loop"):
        raise CnnlabError(f"--impl must be im2col or loop, got '{impl}'.")
    c, h, w = data.input_shape
    if h != w or h < 12:
        raise CnnlabError(f"the scratch LeNet-5 needs square images of at least 12x12 pixels, got {h}x{w}.")
    mean, std = (np.array(v, dtype=np.float32).reshape(1, -1, 1, 1) for v in data.stats())

    def arrays(split) -> tuple[np.ndarray, np.ndarray]:
        return (split.x.numpy() - mean) / std, split.y.numpy()

    (x, y), (xv, yv), (xt, yt) = arrays(data.train), arrays(data.val), arrays(data.test)
    net = lenet5(c, h, data.num_classes, impl=impl, seed=seed)
    optimizer = SGD(((p, g) for _, p, g in net.parameters()), lr=lr, momentum=momentum, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    steps = -(-len(y) // batch_size)
    result = ScratchResult(0.0, 0.0, 0.0, net.num_parameters())
    start = time.perf_counter()
    with TrainingProgress(epochs * steps, 0, quiet) as bar:
        for epoch in range(epochs):
            tick = time.perf_counter()
            order = rng.permutation(len(y))
            loss_sum, correct = 0.0, 0
            for b in range(steps):
                optimizer.lr = lr * 0.5 * (1 + math.cos(math.pi * (epoch * steps + b) / (epochs * steps)))
                idx = order[b * batch_size : (b + 1) * batch_size]
                logits = net.forward(x[idx])  # (B, K)
                loss, dlogits = softmax_cross_entropy(logits, y[idx])
                if not math.isfinite(loss):
                    raise CnnlabError(f"the loss became {loss} at epoch {epoch + 1}; lower --lr.")
                net.backward(dlogits)
                optimizer.step()
                loss_sum += loss * len(idx)
                correct += int((logits.argmax(1) == y[idx]).sum())
                seen = b * batch_size + len(idx)
                bar.step(1, f"epoch {epoch + 1}/{epochs}", f"loss {loss_sum / seen:.4f} acc {correct / seen:.4f}")
            seconds = time.perf_counter() - tick
            record = {"epoch": epoch + 1, "train_loss": loss_sum / len(y), "train_acc": correct / len(y),
                      "images_per_s": len(y) / seconds}
            if len(yv):
                record["val_loss"], record["val_acc"] = evaluate(net, xv, yv)
            record["epoch_seconds"] = time.perf_counter() - tick
            result.epochs.append(record)
            bar.epoch_line(record)
    result.test_loss, result.test_acc = evaluate(net, xt, yt)
    result.seconds = time.perf_counter() - start
    return net, result
