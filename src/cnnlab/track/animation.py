"""The picture of a tracking: an animated GIF, each track's box in its identity's colour, with
the trail of its centre over the last TRAIL frames, and its id."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cnnlab.data.mot import FRAME, ID, X1, Boxes, Sequence
from cnnlab.files import atomic_write

TRAIL = 15  # frames of trail: a second and a half at moving-objects' 10 frames per second
LEGIBLE = 288  # px: small frames are enlarged to about this side, so ids and trails read
LARGEST = 640  # px: large frames are shrunk to this side, so a full-HD sequence stays a few MB
MAX_FRAMES = 300  # frames of the GIF at most (30 s at 10 per second)
# Tableau's 10 colours (matplotlib's tab10), told apart also by most colour-blind readers
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def colour(ident: int) -> str:
    return PALETTE[(ident - 1) % len(PALETTE)]


def tracking_gif(sequence: Sequence, tracked: Boxes, path: Path) -> Path:
    """Write the GIF of `tracked` (rows frame, id, x1, y1, w, h, ...) over the sequence's
    first MAX_FRAMES frames; returns its path."""
    height, width = sequence.size
    scale = LEGIBLE / max(height, width) if max(height, width) < LEGIBLE else min(1.0, LARGEST / max(height, width))
    size = (round(width * scale), round(height * scale))
    line = max(1, round(scale))
    from matplotlib import font_manager

    # matplotlib's own font: an id legible at 12 px (PIL's built-in font is 6 px high)
    font = ImageFont.truetype(font_manager.findfont("DejaVu Sans"), 12)
    centres: dict[int, list[tuple[int, float, float]]] = {}  # id -> (frame, x, y) of its centre
    pictures = []
    for t in range(1, min(sequence.length, MAX_FRAMES) + 1):
        pixels = (sequence.frame(t).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        image = Image.fromarray(pixels).resize(size, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BILINEAR)
        draw = ImageDraw.Draw(image)
        for row in tracked[tracked[:, FRAME] == t]:
            ident = int(row[ID])
            x1, y1, w, h = (row[X1:X1 + 4] * scale).tolist()
            centres.setdefault(ident, []).append((t, x1 + w / 2, y1 + h / 2))
            trail = [(x, y) for s, x, y in centres[ident] if s > t - TRAIL]
            if len(trail) > 1:
                draw.line(trail, fill=colour(ident), width=line)
            draw.rectangle([x1, y1, x1 + w, y1 + h], outline=colour(ident), width=line + 1)
            draw.text((x1 + 3, y1 + 1), str(ident), fill=colour(ident), font=font)
        pictures.append(image.convert("P", palette=Image.Palette.ADAPTIVE))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    duration = round(1000 / sequence.fps)
    atomic_write(path, lambda tmp: pictures[0].save(tmp, format="GIF", save_all=True, append_images=pictures[1:],
                                                    duration=duration, loop=0))
    return path
