"""fashion-scenes: 2-4 Fashion-MNIST items composited on a 64x64 canvas, partly overlapping.

Detection on real item shapes: each scene pastes 2-4 Fashion-MNIST images (Xiao, Rasul &
Vollgraf 2017), 28x28 each, at random places on a dark, lightly textured background
(`shapes.texture`), later items over earlier ones; a placement that would leave an earlier item
less than MIN_VISIBLE in view is drawn again. An item's pixels are those brighter than THRESHOLD
in its own image; they give its mask, and its box is the tight box around its visible pixels.
Training scenes take their items from Fashion-MNIST's training file, test scenes from its test
file. Loading (reading the files and drawing the 3,000 scenes at 64 px) took 21.5 s of CPU, 116 s
wall, while the 2 cores were heavily shared with other processes (torch 2.9).

Targets (see targets.py), one image each:

    mask     (64, 64) int64   0 background, 1 + the Fashion-MNIST class of the item on top
    boxes    (4, 4) float32   each item's box around its visible pixels, x1, y1, x2, y2
                              (x2, y2 exclusive), items first, padding rows of zeros after
    labels   (4,) int64       each box's class (1-10), -1 on padding rows

The data set's task is "detect"; the class map is there for segmentation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cnnlab.data.dataset import Dataset, Split, held_out
from cnnlab.data.registry import DataOptions, load_data, register_dataset
from cnnlab.data.shapes import NOISE, texture
from cnnlab.data.targets import Targets
from cnnlab.errors import CnnlabError

SIDE = 64
ITEM = 28  # Fashion-MNIST's side
MAX_ITEMS = 4
TRAIN_VAL, TEST = 2_400, 600  # val_fraction of the 2,400 is held out (default 0.1: 2,160 / 240 / 600)
SEEDS = {"train": 35, "test": 36}
THRESHOLD = 0.1  # an item's pixel brighter than this is the item: the files' background is 0
MIN_VISIBLE = 0.6  # an item keeps at least 60% of its pixels in view: overlapping, never hidden
TRIES = 10  # placements tried per item; an item that fits in none is left out (rare)
BACKGROUND = ((0.10, 0.10, 0.14), (0.22, 0.20, 0.18))  # dark: the items are bright on black
CHUNK = 256  # scenes drawn at once, as in shapes.py


@register_dataset("fashion-scenes", "2-4 Fashion-MNIST items, partly overlapping, on 64x64 RGB canvases; boxes and masks")
def fashion_scenes(arg: str | None, opts: DataOptions) -> Dataset:
    """2,400 training scenes (val_fraction held out for validation) and 600 test scenes, 64x64
    or drawn at `image_size` (at least ITEM: an item must fit)."""
    side = opts.image_size or SIDE
    if side < ITEM:
        raise CnnlabError(f"fashion-scenes draws scenes of at least {ITEM}x{ITEM} pixels; got image size {side}.")
    base = load_data("fashion-mnist", data_dir=opts.data_dir, val_fraction=0.0, download=opts.download)
    train, val = held_out(*scenes(base.train.x, base.train.y, TRAIN_VAL, SEEDS["train"], side), opts.val_fraction)
    test = Split(*scenes(base.test.x, base.test.y, TEST, SEEDS["test"], side))
    return Dataset(
        name="fashion-scenes",
        classes=["background", *base.classes],
        train=train,
        val=val,
        test=test,
        source=f"{base.source} (Fashion-MNIST items composited by cnnlab.data.fashion_scenes, seeds "
               f"{SEEDS['train']} and {SEEDS['test']})",
        licence=base.licence,
        meta={
            "items": f"2-{MAX_ITEMS} per image, {ITEM}x{ITEM}, each at least {MIN_VISIBLE:.0%} visible",
            "split": f"val {opts.val_fraction:g} of {TRAIN_VAL} generated training scenes; {TEST} test scenes",
        },
        task="detect",
        other_tasks=("segment",),
    )


def scenes(items: Tensor, classes: Tensor, n: int, seed: int, side: int = SIDE) -> tuple[Tensor, Targets]:
    """n scenes of items (M, 1, 28, 28) in [0, 1] with classes (M,): images (n, 3, side, side)
    in [0, 1] and their Targets (mask, boxes, labels)."""
    g = torch.Generator().manual_seed(seed)
    parts = [_draw(items, classes, min(CHUNK, n - i), side, g) for i in range(0, n, CHUNK)]
    x = torch.cat([p[0] for p in parts])
    fields = {name: torch.cat([p[1].get(name) for p in parts]) for name in parts[0][1].fields}
    return x, Targets(fields, parts[0][1].kinds)


def _draw(items: Tensor, classes: Tensor, n: int, side: int, g: torch.Generator) -> tuple[Tensor, Targets]:
    colours = torch.tensor(BACKGROUND).expand(n, 2, 3) + 0.05 * torch.rand(n, 2, 3, generator=g)
    x = texture(colours, side, g)
    count = torch.randint(2, MAX_ITEMS + 1, (n,), generator=g)
    owner = torch.full((n, side, side), -1, dtype=torch.int8)  # which item is on top at each pixel
    pixels = torch.zeros(n, side, side)  # the intensity of the item on top
    kinds = torch.full((n, MAX_ITEMS), -1, dtype=torch.int64)  # class of each placed item, -1: none
    area = torch.zeros(n, MAX_ITEMS)
    for k in range(MAX_ITEMS):
        pending = torch.nonzero(count > k).flatten()
        for _ in range(TRIES):
            pick = torch.randint(0, len(items), (len(pending),), generator=g)
            corner = torch.randint(0, side - ITEM + 1, (len(pending), 2), generator=g)
            canvas = _paste(items[pick, 0], corner, side)  # (P, side, side)
            drawn = canvas > THRESHOLD
            ok = torch.ones(len(pending), dtype=torch.bool)
            for j in range(k):
                still = ((owner[pending] == j) & ~drawn).sum((1, 2)).float()
                ok &= still >= MIN_VISIBLE * area[pending, j]
            placed, d = pending[ok], drawn[ok]
            owner[placed] = torch.where(d, k, owner[placed]).to(torch.int8)
            pixels[placed] = torch.where(d, canvas[ok], pixels[placed])
            kinds[placed, k] = classes[pick[ok]]
            area[placed, k] = d.sum((1, 2)).float()
            pending = pending[~ok]
            if len(pending) == 0:
                break
    on_top = (owner >= 0)[:, None]
    x = torch.where(on_top, pixels[:, None].expand(-1, 3, -1, -1), x)
    x = (x + NOISE * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x, _targets(owner, kinds)


def _paste(images: Tensor, corner: Tensor, side: int) -> Tensor:
    """(P, side, side): each image (P, 28, 28) on a zero canvas with its top-left at corner (P, 2) as (x, y)."""
    p = len(images)
    grid = torch.arange(ITEM)
    rows = (corner[:, 1, None] + grid)[:, :, None].expand(p, ITEM, ITEM)
    cols = (corner[:, 0, None] + grid)[:, None, :].expand(p, ITEM, ITEM)
    canvas = torch.zeros(p, side, side)
    canvas[torch.arange(p)[:, None, None], rows, cols] = images
    return canvas


def _targets(owner: Tensor, kinds: Tensor) -> Targets:
    """The class map (1 + Fashion-MNIST class, 0 background) and each placed item's box around
    its visible pixels and its label, placed items first."""
    n, side, _ = owner.shape
    labels = torch.where(kinds >= 0, kinds + 1, -1)
    padded = torch.cat([torch.zeros(n, 1, dtype=torch.int64), labels.clamp_min(0)], 1)  # owner -1 -> column 0
    mask = padded.gather(1, (owner.long() + 1).view(n, -1)).view(n, side, side)
    boxes = torch.zeros(n, MAX_ITEMS, 4)
    for k in range(MAX_ITEMS):
        seen = owner == k
        has = torch.nonzero(seen.any((1, 2))).flatten()
        from torchvision.ops import masks_to_boxes  # here, not at the top: every `cnnlab train` imports this module

        boxes[has, k] = masks_to_boxes(seen[has]) + torch.tensor([0.0, 0.0, 1.0, 1.0])  # x2, y2 exclusive
    placed = kinds >= 0
    order = torch.sort((~placed).int(), dim=1, stable=True).indices  # placed items first, in drawing order
    boxes = boxes.gather(1, order[..., None].expand(-1, -1, 4))
    labels = labels.gather(1, order)
    return Targets({"mask": mask, "boxes": boxes, "labels": labels}, {"mask": "mask", "boxes": "boxes", "labels": "label"})
