"""Tensors -> PNG bytes for the browser: the model's view of an input, an adversarial image,
a Grad-CAM heatmap laid over the image. Upscaled with nearest neighbour so a 28x28 input
stays 28x28 visible squares rather than a blur."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image
from torch import Tensor


def png(x: Tensor, scale: int = 1) -> bytes:
    """x: (C, H, W) in [0, 1], C = 1 or 3 -> PNG bytes, each pixel a scale x scale square."""
    pixels = (x.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    return _encode(pixels[..., 0] if pixels.shape[2] == 1 else pixels, scale)


def heatmap_png(x: Tensor, heat: Tensor, scale: int = 8, alpha: float = 0.55) -> bytes:
    """The image x (C, H, W) in gray, with heat (H, W) >= 0 coloured over it (inferno: dark =
    nothing, yellow = the most)."""
    from matplotlib import colormaps

    gray = x.detach().mean(0).cpu().numpy()[..., None]  # (H, W, 1)
    h = heat.detach().clamp(min=0).cpu().numpy()
    h = h / h.max() if h.max() > 0 else h
    colour = colormaps["inferno"](h)[..., :3]  # (H, W, 3)
    mixed = (1 - alpha) * gray + alpha * colour
    return _encode((mixed * 255).round().astype(np.uint8), scale)


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _encode(pixels: np.ndarray, scale: int) -> bytes:
    im = Image.fromarray(pixels)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()
