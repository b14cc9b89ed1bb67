"""The 2-D convolution layer (cross-correlation, as every deep-learning library computes it).

    out[n, f, i, j] = b[f] + sum_{c, a, b'} w[f, c, a, b'] * xp[n, c, s*i + a, s*j + b']

with xp the input zero-padded by p on each side, stride s, a k x k kernel, and
H_out = (H + 2p - k) // s + 1 (LeCun et al. 1998; Goodfellow, Bengio & Courville 2016, ch. 9).

`window` is the one hand-worked cell of cnnlab: the lecture's worked example (`cnnlab.inside.conv`)
and the CNN explorer's cells (`cnnlab.serve.explorer`) read their windows with it too.

Two implementations of the same layer, tested equal:

- the *loop* version walks over the output cells: each cell is one window times the kernels,
  exactly the lecture's picture; its backward sends each cell's gradient back to its window;
- the *im2col* version copies every window into one row of a matrix, so the whole layer is a
  single matrix product (Chellapilla, Puri & Simard 2006, High Performance Convolutional
  Neural Networks for Document Processing); its backward adds the rows back ("col2im").
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Array = TypeVar("Array")  # a NumPy array, or a torch tensor (the explorer's): both slice alike


def output_side(n: int, k: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - k) // stride + 1


def pad(x: np.ndarray, p: int) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x


def window(
    xp: Array, kernel_hw: tuple[int, int], at: tuple[int, int],
    stride: int | tuple[int, int] = 1, dilation: int | tuple[int, int] = 1,
) -> Array:
    """The values (..., kh, kw) of the zero-padded input xp (..., H + 2p, W + 2p) that output
    cell at = (i, j) reads: rows s*i + d*a for a < kh, columns s*j + d*b for b < kw (stride s,
    dilation d; Dumoulin & Visin 2016). The cell is sum(window * kernel) + bias.

    A view, not a copy: adding into it adds into xp (the loop backward does).
    """
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    (kh, kw), (i, j) = kernel_hw, at
    return xp[..., sh * i : sh * i + dh * (kh - 1) + 1 : dh, sw * j : sw * j + dw * (kw - 1) + 1 : dw]


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


# -- loop version ---------------------------------------------------------------------------------
def conv2d_loop_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """x: (N, C, H, W), w: (F, C, k, k), b: (F,) -> (N, F, H_out, W_out), one output cell at a time."""
    n, _, h, wd = x.shape
    f, _, k, _ = w.shape
    s, xp = stride, pad(x, padding)
    ho, wo = output_side(h, k, s, padding), output_side(wd, k, s, padding)
    out = np.empty((n, f, ho, wo), dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            cells = window(xp, (k, k), (i, j), s)  # (N, C, k, k)
            out[:, :, i, j] = np.tensordot(cells, w, axes=([1, 2, 3], [1, 2, 3])) + b  # (N, F)
    return out


def conv2d_loop_backward(
    dout: np.ndarray, x: np.ndarray, w: np.ndarray, stride: int, padding: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout: (N, F, H_out, W_out) -> (dx, dw, db).

    Each output cell (i, j) used one window: d out[n, f, i, j] / d w[f] = window[n] and
    d out[n, f, i, j] / d window[n] = w[f], so the cell's gradient flows back to both.
    """
    _, _, h, wd = x.shape
    k = w.shape[2]
    s, p, xp = stride, padding, pad(x, padding)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            cells = window(xp, (k, k), (i, j), s)  # (N, C, k, k)
            g = dout[:, :, i, j]  # (N, F)
            dw += np.tensordot(g, cells, axes=([0], [0]))  # (F, C, k, k)
            window(dxp, (k, k), (i, j), s)[...] += np.tensordot(g, w, axes=([1], [0]))  # (N, C, k, k)
    db = dout.sum(axis=(0, 2, 3))  # every cell adds b[f] once
    return dxp[:, :, p : p + h, p : p + wd], dw, db


# -- im2col version -------------------------------------------------------------------------------
def im2col(xp: np.ndarray, k: int, stride: int) -> np.ndarray:
    """Padded x (N, C, Hp, Wp) -> (N*H_out*W_out, C*k*k): one row per window, as a copy."""
    n, c = xp.shape[:2]
    windows = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]  # (N, C, Ho, Wo, k, k)
    ho, wo = windows.shape[2:4]
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * k * k)


def conv2d_im2col_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, padding: int
) -> tuple[np.ndarray, np.ndarray]:
    """x: (N, C, H, W) -> (out (N, F, H_out, W_out), cols for the backward pass)."""
    n, _, h, wd = x.shape
    f, _, k, _ = w.shape
    ho, wo = output_side(h, k, stride, padding), output_side(wd, k, stride, padding)
    cols = im2col(pad(x, padding), k, stride)  # (N*Ho*Wo, C*k*k)
    out = cols @ w.reshape(f, -1).T + b  # (N*Ho*Wo, F): every cell in one matrix product
    return out.reshape(n, ho, wo, f).transpose(0, 3, 1, 2), cols


def conv2d_im2col_backward(
    dout: np.ndarray, cols: np.ndarray, x_shape: tuple[int, ...], w: np.ndarray, stride: int, padding: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """out = cols @ W^T + b, so dW = dout^T @ cols, db = sum of dout, dcols = dout @ W;
    then col2im adds each window's gradient back where the window was read from."""
    n, c, h, wd = x_shape
    f, _, k, _ = w.shape
    s, p = stride, padding
    ho, wo = dout.shape[2:]
    g = dout.transpose(0, 2, 3, 1).reshape(-1, f)  # (N*Ho*Wo, F)
    dw = (g.T @ cols).reshape(w.shape)
    db = g.sum(axis=0)
    dcols = (g @ w.reshape(f, -1)).reshape(n, ho, wo, c, k, k)
    dxp = np.zeros((n, c, h + 2 * p, wd + 2 * p), dtype=dout.dtype)
    for a in range(k):  # col2im: k*k strided adds instead of Ho*Wo window adds
        for b in range(k):
            dxp[:, :, a : a + s * ho : s, b : b + s * wo : s] += dcols[:, :, :, :, a, b].transpose(0, 3, 1, 2)
    return dxp[:, :, p : p + h, p : p + wd], dw, db


class Conv2d:
    """A conv layer with learned `weight` (F, C, k, k) and `bias` (F,); `impl` is "im2col" or "loop".

    Weights start as He et al. 2015 (normal, std sqrt(2 / (C*k*k))), suited to ReLU.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 impl: str = "im2col", rng: np.random.Generator | None = None, dtype: type = np.float32) -> None:
        if impl not in ("im2col", "loop"):
            raise ValueError(f"impl must be 'im2col' or 'loop', got {impl!r}")
        rng = rng or np.random.default_rng(0)
        fan_in = in_channels * kernel_size * kernel_size
        self.params = {
            "weight": (rng.standard_normal((out_channels, in_channels, kernel_size, kernel_size)) * np.sqrt(2 / fan_in)).astype(dtype),
            "bias": np.zeros(out_channels, dtype=dtype),
        }
        self.grads = {name: np.zeros_like(v) for name, v in self.params.items()}
        self.stride, self.padding, self.impl = stride, padding, impl

    def forward(self, x: np.ndarray) -> np.ndarray:
        w, b = self.params["weight"], self.params["bias"]
        self.x = x
        if self.impl == "loop":
            return conv2d_loop_forward(x, w, b, self.stride, self.padding)
        out, self.cols = conv2d_im2col_forward(x, w, b, self.stride, self.padding)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        w = self.params["weight"]
        if self.impl == "loop":
            dx, dw, db = conv2d_loop_backward(dout, self.x, w, self.stride, self.padding)
        else:
            dx, dw, db = conv2d_im2col_backward(dout, self.cols, self.x.shape, w, self.stride, self.padding)
        self.grads["weight"][...] = dw
        self.grads["bias"][...] = db
        return dx
