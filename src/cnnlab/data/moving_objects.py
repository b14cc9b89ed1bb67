"""moving-objects: seeded videos of 3-6 shapes that move, cross and hide each other, with their
identities; and moving-crops, the crops of such objects by identity, to learn their appearance.

A sequence is drawn as the `shapes` scenes are (data/shapes.py: the same textured background,
circles, squares and triangles of equal area at equal radius, the same pixel noise), so a
detector trained on `shapes` sees familiar frames. Each object keeps its kind, colour, size and
depth for the whole sequence and moves at a nearly constant velocity: its heading turns by a
small random angle each frame (TURN) and it bounces off the frame's edges. Objects are drawn
back to front in a fixed order, so where two cross the nearer one hides the other, often
wholly: the crossings are where trackers swap identities.

Ground truth follows MOTChallenge's gt.txt (data/mot.py): one row per object and frame, its
full box (x1, y1 of the first pixel, width and height of all its pixels, hidden ones too), its
visibility (the share of its pixels in view), and the consider flag 0 for an object less than
HIDDEN in view, which no detector can find: the metrics neither demand it nor count a box on it
as false (MOT16's rule for ambiguous boxes, section 4.1).

moving-crops is a classification data set for an appearance model (the re-identification
network of DeepSORT, Wojke, Bewley & Paulus 2017, is trained to tell identities apart in the
same way): each class is one object identity (kind and colour), each image a 32x32 crop of it
as a tracker crops a detection, the object filling the crop with a few pixels of jitter, on a
random background, sometimes partly covered by another object. The tracks tested on are new
identities: the features must carry what tells any two objects apart, not these identities.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from cnnlab.data.dataset import Dataset, Split
from cnnlab.data.mot import Sequence
from cnnlab.data.registry import DataOptions, register_dataset
from cnnlab.data.shapes import MIN_CONTRAST, NOISE, shape_masks, texture
from cnnlab.errors import CnnlabError

SIDE = 96  # the frames of `shapes`, so a detector trained there reads them at their own size
FRAMES = 80
FPS = 10.0
OBJECTS = (3, 6)  # fewest and most objects in a sequence
RADIUS = (0.08, 0.13)  # of the side: 8-12 px at 96, the smaller half of `shapes`' range, so six fit
SPEED = (0.8, 1.8)  # px per frame: an object crosses the frame in 50-120 frames
TURN = 0.06  # radians, the standard deviation of the heading's change per frame: nearly constant velocity
HIDDEN = 0.2  # an object with less of its pixels in view is not considered by the metrics
DISTINCT = 0.25  # RGB distance between any two objects' colours: the colours a tracker can tell apart
COLOUR_TRIES = 200

CROP = 32
IDENTITIES = 48
CROPS = {"train": 60, "val": 10, "test": 20}  # per identity
SEEDS = {"train": 21, "val": 22, "test": 23}
OCCLUDED = 0.3  # share of crops partly covered by another object, as crops at a crossing are


def parse_seed(name: str) -> int:
    """'moving-objects' -> 0, 'moving-objects:7' -> 7; anything else is named."""
    base, _, seed = name.partition(":")
    if base != "moving-objects" or (seed and not seed.isdigit()):
        raise CnnlabError(f"'{name}' is not a generated sequence; write moving-objects or moving-objects:SEED (SEED a whole number).")
    return int(seed or 0)


def moving_objects(seed: int = 0, frames: int = FRAMES, side: int = SIDE) -> Sequence:
    """The sequence of `seed`: frames (3, side, side) in [0, 1] and gt.txt rows, every object
    of every frame (see the module's docstring)."""
    if frames < 1 or side < 32:
        raise CnnlabError(f"moving-objects needs at least 1 frame of at least 32x32 pixels; got {frames} of {side}x{side}.")
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(OBJECTS[0], OBJECTS[1] + 1, (1,), generator=g))
    colours = torch.rand(1, 2, 3, generator=g)
    colours[:, 1] = (colours[:, 0] + (torch.rand(1, 3, generator=g) - 0.5) * 0.6).clamp(0, 1)
    background = texture(colours, side, g)[0]
    kind = torch.randint(1, 4, (n,), generator=g)
    radius = side * (RADIUS[0] + (RADIUS[1] - RADIUS[0]) * torch.rand(n, generator=g))
    paint = _colours(colours[0], n, g)
    position = radius[:, None] + (side - 2 * radius[:, None]) * torch.rand(n, 2, generator=g)
    heading = 2 * math.pi * torch.rand(n, generator=g)
    speed = SPEED[0] + (SPEED[1] - SPEED[0]) * torch.rand(n, generator=g)
    centres = []
    for _ in range(frames):
        centres.append(position)
        heading = heading + TURN * torch.randn(n, generator=g)
        position, heading = _step(position, heading, speed, radius, side)
    centre = torch.stack(centres)  # (T, n, 2)
    drawn = shape_masks(kind.repeat(frames), centre.flatten(0, 1), radius.repeat(frames), side).view(frames, n, side, side)
    depth = torch.arange(1, n + 1)[None, :, None, None]
    owner = (drawn * depth).amax(1) - 1  # (T, side, side): the nearest object at each pixel, -1 for none
    video = background.expand(frames, -1, -1, -1)
    for k in range(n):
        video = torch.where((owner == k)[:, None], paint[k, :, None, None], video)
    video = (video + NOISE * torch.randn(video.shape, generator=g)).clamp(0, 1)
    shown = (owner[:, None] == torch.arange(n)[None, :, None, None]).sum((2, 3)) / drawn.sum((2, 3))  # (T, n)
    (x1, x2), (y1, y2) = _span(drawn.any(2)), _span(drawn.any(3))
    t = torch.arange(1, frames + 1)[:, None].expand(frames, n)
    ident = torch.arange(1, n + 1)[None].expand(frames, n)
    rows = torch.stack([t, ident, x1, y1, x2 - x1, y2 - y1, (shown >= HIDDEN).double(), shown.double()], -1)
    return Sequence(name=f"moving-objects-{seed}", length=frames, size=(side, side), fps=FPS,
                    frame=lambda t: video[t - 1], gt=rows.flatten(0, 1).double().numpy())


def _span(flags: Tensor) -> tuple[Tensor, Tensor]:
    """The first True and one past the last True along the last dimension of flags (..., side)."""
    return flags.int().argmax(-1), flags.shape[-1] - flags.flip(-1).int().argmax(-1)


def _step(position: Tensor, heading: Tensor, speed: Tensor, radius: Tensor, side: int) -> tuple[Tensor, Tensor]:
    """One frame of motion; an object whose centre would leave [r, side - r] bounces back."""
    velocity = speed[:, None] * torch.stack([heading.cos(), heading.sin()], 1)
    moved = position + velocity
    low, high = radius[:, None], side - radius[:, None]
    out = (moved < low) | (moved > high)
    velocity = torch.where(out, -velocity, velocity)
    moved = torch.where(out, position + velocity, moved)
    return moved, torch.atan2(velocity[:, 1], velocity[:, 0])


def _colours(background: Tensor, n: int, g: torch.Generator) -> Tensor:
    """(n, 3) colours at least MIN_CONTRAST from both background colours (2, 3) and DISTINCT
    from each other, drawn one by one (a colour that fits in none of the tries is kept)."""
    paint = []
    for _ in range(n):
        for _ in range(COLOUR_TRIES):
            c = torch.rand(3, generator=g)
            far = torch.cdist(c[None], background).min() >= MIN_CONTRAST
            if far and all(torch.dist(c, p) >= DISTINCT for p in paint):
                break
        paint.append(c)
    return torch.stack(paint)


@register_dataset("moving-crops", f"{CROP}x{CROP} crops of {IDENTITIES} moving-objects identities (kind and colour); "
                                  "a class per identity, to learn appearance for tracking")
def moving_crops(arg: str | None, opts: DataOptions) -> Dataset:
    """Crops of IDENTITIES objects, CROPS[split] per identity and split, each split from its own
    seed (val_fraction does not apply: the val split is drawn apart)."""
    g = torch.Generator().manual_seed(SEEDS["train"])
    kind = torch.randint(1, 4, (IDENTITIES,), generator=g)
    paint = torch.rand(IDENTITIES, 3, generator=g)
    splits = {name: _crops(kind, paint, CROPS[name], SEEDS[name]) for name in CROPS}
    return Dataset(
        name="moving-crops",
        classes=[f"id{k:02d}" for k in range(IDENTITIES)],
        **splits,
        source="generated by cnnlab.data.moving_objects (seeds " + ", ".join(str(s) for s in SEEDS.values()) + ")",
        licence="generated data, no licence needed",
        meta={"crops": f"{CROPS['train']} train, {CROPS['val']} val, {CROPS['test']} test per identity; "
                       f"{OCCLUDED:.0%} partly covered by another object"},
    )


def _crops(kind: Tensor, paint: Tensor, per: int, seed: int) -> Split:
    """`per` crops of each identity (kind (I,), colour (I, 3)) on random backgrounds."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.arange(len(kind)).repeat_interleave(per)
    n = len(ids)
    colours = torch.rand(n, 2, 3, generator=g)
    colours[:, 1] = (colours[:, 0] + (torch.rand(n, 3, generator=g) - 0.5) * 0.6).clamp(0, 1)
    x = texture(colours, CROP, g)
    # the object fills the crop as its box does, give or take the jitter of a detection's box
    radius = CROP / 2 * (0.85 + 0.2 * torch.rand(n, generator=g))
    centre = CROP / 2 + 2.0 * torch.randn(n, 2, generator=g)
    x = torch.where(shape_masks(kind[ids], centre, radius, CROP)[:, None], paint[ids, :, None, None], x)
    cover = torch.rand(n, generator=g) < OCCLUDED
    edge = CROP * torch.rand(n, 2, generator=g)  # another object's centre near a side of the crop
    side = torch.randint(0, 2, (n,), generator=g)
    edge[torch.arange(n), side] = torch.where(torch.rand(n, generator=g) < 0.5, -2.0, CROP + 2.0)
    other = shape_masks(torch.randint(1, 4, (n,), generator=g), edge, radius, CROP) & cover[:, None, None]
    x = torch.where(other[:, None], torch.rand(n, 3, 1, 1, generator=g), x)
    x = (x + NOISE * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return Split(x, ids)
