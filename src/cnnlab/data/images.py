"""One image file -> a (C, H, W) float32 tensor in [0, 1], the way every cnnlab tool sees pixels.

`cnnlab predict` and the `imagefolder` dataset both read through `read_image`, so an image is
converted the same way when a model is trained on it and when it is asked about it:

- EXIF orientation is applied (phone photos are often stored sideways);
- transparency (RGBA, LA, palette with a transparent colour) is composited over white, as a
  browser or document shows it; dropping alpha instead would paint transparent areas with
  whatever colour they happen to hold, often black;
- 16-bit gray is scaled by 1/65535 (Pillow's own conversion to 8 bits would clip at 255);
- then converted to 'L' (ITU-R 601 luma) for 1 channel or 'RGB' for 3, and resized with
  Pillow's bilinear filter, which also averages when it shrinks (no aliasing).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from cnnlab.errors import CnnlabError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N")

# 64 megapixels (8000x8000, 192 MB as RGB) is more than any camera file a CNN here needs; a
# larger header is refused before decoding, as a possible decompression bomb (a small file
# that expands to gigabytes). Stricter than Pillow's own limit (about 89 megapixels).
MAX_PIXELS = 64_000_000


def check_input_shape(shape: object, what: str) -> tuple[int, ...]:
    """`shape` as (C, H, W), or (T, C, H, W) for clips of T frames, of positive integers, or one
    sentence naming `what` gave it.

    No input may hold more than the largest image read here (MAX_PIXELS, in RGB): a model
    built for more, or a batch of such inputs, would not fit in memory. A clip's frames count
    together, so a clip holds no more pixels than that one image."""
    ok = (isinstance(shape, (list, tuple)) and len(shape) in (3, 4)
          and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape))
    if not ok:
        raise CnnlabError(f"{what} must be an input shape of 3 positive integers (channels, height, width), "
                          f"or 4 for clips (frames first), got {shape!r}.")
    *frames, c, h, w = shape  # type: ignore[misc]
    t = frames[0] if frames else 1
    if t * h * w > MAX_PIXELS or t * c * h * w > 3 * MAX_PIXELS:
        raise CnnlabError(
            f"{what} gives an input of {'x'.join(map(str, shape))}, more than the largest image cnnlab reads "  # type: ignore[arg-type]
            f"({MAX_PIXELS:,} pixels, 3 channels)."
        )
    return tuple(shape)  # type: ignore[arg-type]


def read_image(path: str | Path | BinaryIO, channels: int, size: tuple[int, int]) -> Tensor:
    """Pixels of the image at `path` as (channels, H, W) float32 in [0, 1], for size = (H, W).
    `path` may also be an open binary file (an upload in an io.BytesIO, whose `name` the error
    messages use): decoding from memory costs a tenth of writing a temporary file first."""
    if channels not in (1, 3):
        raise CnnlabError(f"images can be read with 1 or 3 channels, not {channels}.")
    h, w = size
    im = _open(path if hasattr(path, "read") else Path(path), decode=True)
    if im.mode.startswith("I"):  # 16-bit (or 32-bit int) gray: scale, do not clip
        gray = Image.fromarray(np.asarray(im, dtype=np.float32) / 65535)  # mode 'F'
        pixels = np.asarray(gray.resize((w, h), Image.Resampling.BILINEAR)).clip(0, 1)
        return torch.from_numpy(pixels).expand(channels, h, w).contiguous()
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA")  # a palette's transparent index becomes alpha
    if im.mode in ("RGBA", "LA"):
        im = Image.alpha_composite(Image.new("RGBA", im.size, "white"), im.convert("RGBA"))
    im = im.convert("L" if channels == 1 else "RGB").resize((w, h), Image.Resampling.BILINEAR)
    pixels = np.asarray(im, dtype=np.float32) / 255
    return torch.from_numpy(pixels).reshape(h, w, channels).permute(2, 0, 1).contiguous()


def image_mode(path: str | Path) -> str:
    """Pillow's mode of the image ('L', 'RGB', 'I;16', ...), from its header alone."""
    return _open(Path(path), decode=False).mode


def _open(path: Path | BinaryIO, decode: bool) -> Image.Image:
    """Open (and with `decode`, fully decode) an image; any failure is one CnnlabError naming it."""
    shown = path if isinstance(path, Path) else getattr(path, "name", "the image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS is the check
            with Image.open(path) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise CnnlabError(
                        f"cannot read image {shown}: {im.width}x{im.height} is over {MAX_PIXELS:,} pixels, "
                        "refused as a possible decompression bomb."
                    )
                if not decode:
                    return im
                im.load()
                return ImageOps.exif_transpose(im)  # a decoded copy, independent of the closed file
    except CnnlabError:
        raise
    # Pillow's decoders raise many types on bad bytes (OSError, SyntaxError, ValueError, struct.error...)
    except Exception as e:  # noqa: BLE001
        raise CnnlabError(f"cannot read image {shown}: {_reason(e)}.") from e


def _reason(e: Exception) -> str:
    if isinstance(e, FileNotFoundError):
        return "no such file"
    if isinstance(e, IsADirectoryError):
        return "it is a folder"
    if isinstance(e, UnidentifiedImageError):
        return "not an image format Pillow can decode"
    if isinstance(e, Image.DecompressionBombError):
        return f"over {MAX_PIXELS:,} pixels, refused as a possible decompression bomb"
    return str(e).rstrip(".") or type(e).__name__
