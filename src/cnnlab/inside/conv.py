"""A convolution worked by hand: the lecture's 3-channel example, and any other picture.

One output cell of a conv layer is the sum, over the input channels, of the element-wise
products of a window of the (zero-padded) input with that channel's kernel, plus the bias:

    out[i, j] = b + sum_c sum_{a, b'} K[c, a, b'] * xp[c, s*i + d*a, s*j + d*b']

(stride s, dilation d; Dumoulin & Visin 2016, A guide to convolution arithmetic for deep
learning, which also gives the output size

    H_out = floor((H + 2p - d*(k - 1) - 1) / s) + 1 .)

The lecture's example (slides 5-6): a 5x5 RGB image, padding 1, one 3x3 kernel per channel,
bias 1; the top-left cell is 308 - 498 + 164 + 1 = -25.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.scratch.conv import window


def _grid(text: str) -> np.ndarray:
    return np.array([[float(v) for v in row.split()] for row in text.split("/")])


LECTURE_IMAGE = np.stack([  # (3, 5, 5): R, G, B
    _grid("156 155 156 158 158 / 153 154 157 159 159 / 149 151 155 158 159 / 146 146 149 153 158 / 145 143 143 148 158"),
    _grid("167 166 167 169 169 / 164 165 168 170 170 / 160 162 166 169 170 / 156 156 159 163 168 / 155 153 153 158 168"),
    _grid("163 162 163 165 165 / 160 161 164 166 166 / 156 158 162 165 166 / 155 155 158 162 167 / 154 152 152 157 167"),
])
LECTURE_KERNEL = np.stack([  # (3, 3, 3): one 3x3 kernel per input channel, together one filter
    _grid("-1 -1 1 / 0 1 -1 / 0 1 1"),
    _grid("1 0 0 / 1 -1 -1 / 1 0 -1"),
    _grid("0 1 1 / 0 1 0 / 1 -1 1"),
])
LECTURE_BIAS = 1.0
LECTURE_PADDING = 1
LECTURE_CHANNELS = ("R", "G", "B")

# Classic 3x3 image kernels (Gonzalez & Woods, Digital Image Processing, ch. 3).
KERNELS = {
    "edge": _grid("-1 -1 -1 / -1 8 -1 / -1 -1 -1"),  # Laplacian: 0 on flat areas, large on edges
    "blur": _grid("1 2 1 / 2 4 2 / 1 2 1") / 16,  # Gaussian-like smoothing, sums to 1
    "sharpen": _grid("0 -1 0 / -1 5 -1 / 0 -1 0"),  # identity plus a Laplacian, sums to 1
}


@dataclass(frozen=True)
class Geometry:
    stride: int = 1
    padding: int = 0
    dilation: int = 1

    def check(self) -> None:
        if self.stride < 1 or self.dilation < 1 or self.padding < 0:
            raise CnnlabError(
                f"--stride and --dilation must be at least 1 and --padding at least 0 "
                f"(got stride {self.stride}, dilation {self.dilation}, padding {self.padding})."
            )


def output_side(n: int, k: int, g: Geometry) -> int:
    """floor((n + 2p - d(k-1) - 1) / s) + 1, the number of positions of a k-wide kernel."""
    return (n + 2 * g.padding - g.dilation * (k - 1) - 1) // g.stride + 1


def output_side_formula(axis: str, n: int, k: int, g: Geometry) -> str:
    """'H_out = floor((5 + 2*1 - 1*(3 - 1) - 1) / 1) + 1 = 5': the formula with its numbers."""
    return (f"{axis}_out = floor(({n} + 2*{g.padding} - {g.dilation}*({k} - 1) - 1) / {g.stride}) + 1 "
            f"= {output_side(n, k, g)}")


def check_fits(image_hw: tuple[int, int], kernel_hw: tuple[int, int], g: Geometry) -> tuple[int, int]:
    """The output size (H_out, W_out), or one sentence if the kernel cannot fit even once."""
    from cnnlab.data.images import MAX_PIXELS

    g.check()
    (h, w), (k1, k2) = image_hw, kernel_hw
    if (h + 2 * g.padding) * (w + 2 * g.padding) > MAX_PIXELS:  # the padded copy is made in memory
        raise CnnlabError(
            f"--padding {g.padding} makes a {h + 2 * g.padding}x{w + 2 * g.padding} padded image, more than the "
            f"{MAX_PIXELS:,} pixels of the largest image cnnlab reads; use less padding."
        )
    span1, span2 = g.dilation * (k1 - 1) + 1, g.dilation * (k2 - 1) + 1
    if span1 > h + 2 * g.padding or span2 > w + 2 * g.padding:
        dilated = f" ({k1}x{k2} at dilation {g.dilation})" if g.dilation > 1 else ""
        raise CnnlabError(
            f"the kernel spans {span1}x{span2} pixels{dilated} but the padded image is only "
            f"{h + 2 * g.padding}x{w + 2 * g.padding}; use a smaller kernel or dilation, or more --padding."
        )
    return output_side(h, k1, g), output_side(w, k2, g)


def pad(image: np.ndarray, p: int) -> np.ndarray:
    """(C, H, W) -> (C, H + 2p, W + 2p) with zeros around, as the lecture draws it."""
    return np.pad(image, ((0, 0), (p, p), (p, p)))


def conv_map(image: np.ndarray, kernel: np.ndarray, bias: float, g: Geometry) -> np.ndarray:
    """The whole output map (H_out, W_out) of one filter: image (C, H, W), kernel (C, k1, k2).

    Written as k1*k2 shifted copies of the padded image, each times one kernel weight: the
    same sum as cell by cell, but as whole-array operations.
    """
    c, k1, k2 = kernel.shape
    ho, wo = check_fits(image.shape[1:], (k1, k2), g)
    xp, s, d = pad(image, g.padding), g.stride, g.dilation
    out = np.full((ho, wo), float(bias))
    for a in range(k1):
        for b in range(k2):
            shifted = xp[:, d * a : d * a + s * (ho - 1) + 1 : s, d * b : d * b + s * (wo - 1) + 1 : s]  # (C, Ho, Wo)
            out += np.tensordot(kernel[:, a, b], shifted, axes=1)
    return out


def parse_at(text: str) -> tuple[int, int]:
    try:
        i, j = (int(v) for v in text.split(","))
    except ValueError:
        raise CnnlabError(f"--at must look like I,J (row and column of the output cell), got '{text}'.") from None
    return i, j


def work_cell(image: np.ndarray, kernel: np.ndarray, bias: float, at: tuple[int, int], g: Geometry,
              channels: tuple[str, ...] | None = None) -> dict[str, Any]:
    """One output cell worked by hand: per channel its window, the products and their sum,
    then the channel sums plus the bias, and the whole map."""
    c, k1, k2 = kernel.shape
    if image.shape[0] != c:
        raise CnnlabError(f"the image has {image.shape[0]} channels but the kernel {c}; they must match.")
    output = conv_map(image, kernel, bias, g)
    ho, wo = output.shape
    i, j = at
    if not (0 <= i < ho and 0 <= j < wo):
        raise CnnlabError(
            f"--at {i},{j} is outside the {ho}x{wo} output map; rows go from 0 to {ho - 1} and columns from 0 to {wo - 1}."
        )
    names = channels or tuple(f"channel {n}" for n in range(c))
    win = window(pad(image, g.padding), (k1, k2), at, g.stride, g.dilation)  # (C, k1, k2)
    parts = []
    for name, w, k in zip(names, win, kernel):
        products = w * k
        parts.append({"channel": name, "window": w.tolist(), "kernel": k.tolist(), "products": products.tolist(),
                      "sum": float(products.sum())})
    value = sum(p["sum"] for p in parts) + bias
    assert math.isclose(value, output[i, j], rel_tol=1e-9, abs_tol=1e-9)
    h, w = image.shape[1:]
    return {
        "at": [i, j],
        "input_shape": [c, h, w],
        "kernel_shape": [c, k1, k2],
        "stride": g.stride, "padding": g.padding, "dilation": g.dilation,
        "channels": parts,
        "bias": bias,
        "sum": _signed([p["sum"] for p in parts] + [bias]) + f" = {_num(value)}",
        "value": value,
        "output_size": [ho, wo],
        "formula": [output_side_formula("H", h, k1, g), output_side_formula("W", w, k2, g)],
        "output": output.tolist(),
    }


def lecture_example(at: tuple[int, int] = (0, 0), stride: int = 1, padding: int | None = None,
                    dilation: int = 1) -> dict[str, Any]:
    """The lecture's worked example (padding 1 unless told), at output cell `at`."""
    g = Geometry(stride, LECTURE_PADDING if padding is None else padding, dilation)
    return {"example": "lecture",
            **work_cell(LECTURE_IMAGE, LECTURE_KERNEL, LECTURE_BIAS, at, g, LECTURE_CHANNELS)}


def _signed(terms: list[float]) -> str:
    """[308, -498, 164, 1] -> '308 - 498 + 164 + 1', as the lecture writes it."""
    text = _num(terms[0])
    for t in terms[1:]:
        text += f" - {_num(-t)}" if t < 0 else f" + {_num(t)}"
    return text


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.4g}"


# -- a user's picture -------------------------------------------------------------------------------
def load_kernel(spec: str) -> tuple[str, np.ndarray]:
    """'edge' | 'blur' | 'sharpen' | a text file of numbers (rows of a 2-D kernel) -> (name, (k1, k2))."""
    if spec in KERNELS:
        return spec, KERNELS[spec]
    path = Path(spec)
    if not path.is_file():
        raise CnnlabError(f"--kernel must be edge, blur, sharpen or a text file of numbers; '{spec}' is neither.")
    try:
        rows = [[float(v) for v in line.replace(",", " ").split()] for line in path.read_text().splitlines() if line.strip()]
    except (ValueError, UnicodeDecodeError):
        raise CnnlabError(f"kernel file {path} must hold rows of numbers separated by spaces or commas.") from None
    if not rows or len({len(r) for r in rows}) != 1:
        raise CnnlabError(f"kernel file {path} must hold a rectangle of numbers: every row as long as the first.")
    kernel = np.array(rows)
    if not np.isfinite(kernel).all():
        raise CnnlabError(f"kernel file {path} holds inf or NaN; give finite numbers.")
    return path.stem, kernel


def convolve_image(image_path: str | Path, kernel_spec: str, out: str | Path | None = None, stride: int = 1,
                   padding: int | None = None, dilation: int = 1) -> dict[str, Any]:
    """Convolve a picture (read as gray, pixels in [0, 1]) with a 2-D kernel; save the result PNG.

    Padding defaults to half the kernel ("same" size at stride 1). A kernel whose weights sum
    to about 1 (blur, sharpen) keeps brightness, so its output is clipped to [0, 1]; any
    other (edge) is shown as |response| / its maximum.
    """
    from PIL import Image

    from cnnlab.data.images import read_image
    from cnnlab.files import atomic_write, slug

    name, kernel = load_kernel(kernel_spec)
    size = _image_size(Path(image_path))
    x = read_image(image_path, 1, size).double().numpy()  # (1, H, W); a non-image is one sentence here
    k1, k2 = kernel.shape
    g = Geometry(stride, (min(k1, k2) - 1) * dilation // 2 if padding is None else padding, dilation)
    result = conv_map(x, kernel[None], 0.0, g)
    if abs(kernel.sum() - 1) < 1e-6:
        shown = result.clip(0, 1)
    else:
        shown = np.abs(result) / max(float(np.abs(result).max()), 1e-12)
    out = Path(out) if out else Path(f"{Path(image_path).stem}-{slug(name)}.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    pixels = Image.fromarray((shown * 255).round().astype(np.uint8))
    atomic_write(out, lambda tmp: pixels.save(tmp, format="PNG"))
    h, w = x.shape[1:]
    return {
        "image": str(image_path), "kernel": name, "weights": kernel.tolist(),
        "input_size": [h, w], "stride": g.stride, "padding": g.padding, "dilation": g.dilation,
        "output_size": list(result.shape),
        "formula": [output_side_formula("H", h, k1, g), output_side_formula("W", w, k2, g)],
        "min": float(result.min()), "max": float(result.max()), "out": str(out),
    }


def _image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file; for an unreadable one, `read_image` says why in one sentence."""
    from PIL import Image

    from cnnlab.data.images import read_image

    try:
        with Image.open(path) as im:
            return im.height, im.width
    except Exception:  # noqa: BLE001 - any failure: let read_image give the clear sentence
        read_image(path, 1, (1, 1))
        raise CnnlabError(f"cannot read image {path}.") from None
