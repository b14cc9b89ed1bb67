"""The layers around the convolutions: ReLU, max-pooling, flatten, fully connected.

Every layer has `forward(x)` (which keeps what its backward needs) and `backward(dout)`
(which returns d loss / d x and fills `grads` for its `params`), next to each other.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


class ReLU:
    """max(0, x) (Nair & Hinton 2010); its derivative is 1 where x > 0, else 0."""

    params: dict[str, np.ndarray] = {}
    grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.mask = x > 0
        return x * self.mask

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * self.mask


class MaxPool2d:
    """The largest value of each k x k window, moved by `stride` (default k).

    Backward: only the window's maximum received the output, so only it gets the gradient
    (Ranzato et al. 2007; the `argmax` routing every library uses). x: (N, C, H, W).
    """

    params: dict[str, np.ndarray] = {}
    grads: dict[str, np.ndarray] = {}

    def __init__(self, kernel_size: int, stride: int | None = None) -> None:
        self.k, self.s = kernel_size, stride or kernel_size

    def forward(self, x: np.ndarray) -> np.ndarray:
        k, s = self.k, self.s
        windows = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]  # (N, C, Ho, Wo, k, k)
        flat = windows.reshape(*windows.shape[:4], k * k)
        self.argmax = flat.argmax(axis=-1)  # (N, C, Ho, Wo): which of the k*k won
        self.x_shape = x.shape
        return np.take_along_axis(flat, self.argmax[..., None], axis=-1)[..., 0]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        k, s = self.k, self.s
        ho, wo = dout.shape[2:]
        dx = np.zeros(self.x_shape, dtype=dout.dtype)
        for a in range(k):  # the window offset (a, b) receives dout where it held the max
            for b in range(k):
                dx[:, :, a : a + s * ho : s, b : b + s * wo : s] += dout * (self.argmax == a * k + b)
        return dx


class Flatten:
    """(N, C, H, W) -> (N, C*H*W), and the gradient reshaped back."""

    params: dict[str, np.ndarray] = {}
    grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x_shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout.reshape(self.x_shape)


class Linear:
    """y = x W^T + b with W (out, in) as torch stores it (Rosenblatt 1958; Rumelhart et al. 1986).

    Backward: dW = dout^T x, db = sum over the batch of dout, dx = dout W.
    Weights start as He et al. 2015 (normal, std sqrt(2 / in)).
    """

    def __init__(self, in_features: int, out_features: int, rng: np.random.Generator | None = None,
                 dtype: type = np.float32) -> None:
        rng = rng or np.random.default_rng(0)
        self.params = {
            "weight": (rng.standard_normal((out_features, in_features)) * np.sqrt(2 / in_features)).astype(dtype),
            "bias": np.zeros(out_features, dtype=dtype),
        }
        self.grads = {name: np.zeros_like(v) for name, v in self.params.items()}

    def forward(self, x: np.ndarray) -> np.ndarray:  # x: (N, in) -> (N, out)
        self.x = x
        return x @ self.params["weight"].T + self.params["bias"]

    def backward(self, dout: np.ndarray) -> np.ndarray:  # dout: (N, out) -> (N, in)
        self.grads["weight"][...] = dout.T @ self.x
        self.grads["bias"][...] = dout.sum(axis=0)
        return dout @ self.params["weight"]
