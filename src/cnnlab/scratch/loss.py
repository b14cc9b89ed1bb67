"""Softmax cross-entropy, the loss of every classifier here, with its gradient."""

from __future__ import annotations

import numpy as np


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean over the batch of -log softmax(logits)[y], and its gradient d loss / d logits.

    logits: (N, K), y: (N,) class indices. With p = softmax(logits) the gradient is
    (p - onehot(y)) / N (Bishop 2006, eq. 4.109). The max is subtracted first, which leaves
    softmax unchanged but keeps exp from overflowing.
    """
    n = len(y)
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))  # (N, K)
    loss = -log_p[np.arange(n), y].mean()
    grad = np.exp(log_p)
    grad[np.arange(n), y] -= 1
    return float(loss), grad / n
