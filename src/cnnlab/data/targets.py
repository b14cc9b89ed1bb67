"""Targets of any task, held like the images: tensors whose first dimension is the image.

A classifier's target is a plain int64 tensor (N,) of class indices. Other tasks need more than
one number per image, so their targets are a `Targets`: named tensors sharing that first
dimension, each with a *kind* that says how it moves when the pixels move:

    kind        shape           holds
    label       (N, ...)        anything that does not move (classes, visibility, ids)
    mask        (N, H, W)       a class per pixel; IGNORE where no class is known
    boxes       (N, M, 4)       x1, y1, x2, y2 in pixels; rows past an image's count are padding
    keypoints   (N, J, 3)       x, y in pixels and a visibility flag (0 = not labelled)

A keypoints field NAME may come with a label field NAME_mirror (N, J) int64: the joint each
joint becomes in the mirror image. A left-right flip moves the pixels of a left wrist to where a
right wrist would be, so the mirrored points are renumbered by it (left and right swap names);
without it every joint keeps its index.

Variable counts (boxes per image) are padded to the largest count, with the padding marked in
a `label` field (a class of -1), so indexing, shuffling, hashing, moving to a device and slicing
for DDP are the same tensor operations for every task.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

KINDS = ("label", "mask", "boxes", "keypoints")
IGNORE = 255  # mask value of a pixel with no class: outside the image after a crop, or unlabelled


@dataclass
class Targets:
    fields: dict[str, Tensor]
    kinds: dict[str, str]  # field name -> one of KINDS

    def __post_init__(self) -> None:
        sizes = {len(t) for t in self.fields.values()}
        if len(sizes) > 1:
            raise ValueError(f"target fields differ in length: { {k: len(t) for k, t in self.fields.items()} }")
        unknown = set(self.kinds.values()) - set(KINDS)
        if unknown or set(self.kinds) != set(self.fields):
            raise ValueError(f"every target field needs a kind among {KINDS}; got {self.kinds}")

    def __len__(self) -> int:
        return len(next(iter(self.fields.values())))

    def __getitem__(self, index: Tensor | slice | int) -> Targets:
        return Targets({k: t[index] for k, t in self.fields.items()}, self.kinds)

    def __contains__(self, name: str) -> bool:
        return name in self.fields

    def get(self, name: str) -> Tensor:
        return self.fields[name]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Targets:
        return Targets({k: t.to(device, non_blocking=non_blocking) for k, t in self.fields.items()}, self.kinds)

    def pin_memory(self) -> Targets:
        return Targets({k: t.pin_memory() for k, t in self.fields.items()}, self.kinds)

    def tensors(self) -> Iterator[tuple[str, Tensor]]:
        """(name, tensor) in a fixed order (sorted names), for hashing."""
        for name in sorted(self.fields):
            yield name, self.fields[name]

    def clone(self) -> Targets:
        return Targets({k: t.clone() for k, t in self.fields.items()}, dict(self.kinds))


def target_tensors(y: Tensor | Targets) -> list[Tensor]:
    """The tensors that make up targets, in a fixed order."""
    return [y] if isinstance(y, Tensor) else [t for _, t in y.tensors()]


MIRRORED = {"left": "right", "right": "left", "cw": "ccw", "ccw": "cw"}


def mirror_order(names: list[str]) -> list[int]:
    """What each joint or class becomes in a left-right mirror image, by name: 'left' <-> 'right'
    anywhere in it ('left_wrist', the NAME_mirror field of keypoints; moving-actions' 'left'
    clip), 'cw' <-> 'ccw' as a word ('rotate-cw'); a name without a counterpart stays itself."""
    def swapped(name: str) -> str:
        return re.sub(r"left|right|(?<![a-z])c?cw(?![a-z])", lambda m: MIRRORED[m.group()], name)

    return [names.index(swapped(n)) if swapped(n) in names else i for i, n in enumerate(names)]


def flip_targets(y: Tensor | Targets, flip: Tensor, width: int, mirror: Tensor | None = None) -> Tensor | Targets:
    """Mirror left-right the targets of the images where `flip` (N,) is True, as the pixels were.
    Class labels keep their class, unless `mirror` (K,) names the class each becomes."""
    if isinstance(y, Tensor):
        return y if mirror is None else torch.where(flip, mirror.to(y.device)[y], y)
    out = {}
    for name, t in y.fields.items():
        kind = y.kinds[name]
        if kind == "mask":
            t = torch.where(flip[:, None, None], t.flip(-1), t)
        elif kind == "boxes":
            mirrored = torch.stack([width - t[..., 2], t[..., 1], width - t[..., 0], t[..., 3]], -1)
            t = torch.where(flip[:, None, None], mirrored, t)
        elif kind == "keypoints":
            mirrored = torch.stack([width - 1 - t[..., 0], t[..., 1], t[..., 2]], -1)
            if f"{name}_mirror" in y.fields:  # joint j of the mirror image is the mirrored joint mirror[j]
                mirrored = mirrored.gather(1, y.fields[f"{name}_mirror"][..., None].expand(-1, -1, 3))
            t = torch.where(flip[:, None, None], mirrored, t)
        out[name] = t
    return Targets(out, y.kinds)


def shift_targets(y: Tensor | Targets, dy: Tensor, dx: Tensor, padding: int, size: tuple[int, int]) -> Tensor | Targets:
    """The targets after each image was zero-padded by `padding` and cut back at offset (dy, dx)
    (N, 1) each: the content moves by (padding - dy, padding - dx). Mask pixels that came from
    the padding become IGNORE; boxes are clipped to the image (a box left with no area keeps its
    class but zero size); keypoints that leave the image become invisible."""
    if isinstance(y, Tensor):
        return y
    h, w = size
    sy, sx = (padding - dy).view(-1), (padding - dx).view(-1)  # (N,) shift of the content
    out = {}
    for name, t in y.fields.items():
        kind = y.kinds[name]
        if kind == "mask":
            padded = torch.nn.functional.pad(t, (padding,) * 4, value=IGNORE)
            rows = (torch.arange(h, device=t.device) + dy)[:, :, None]  # (N, H, 1)
            cols = (torch.arange(w, device=t.device) + dx)[:, None, :]  # (N, 1, W)
            t = padded[torch.arange(len(t), device=t.device)[:, None, None], rows, cols]
        elif kind == "boxes":
            shift = torch.stack([sx, sy, sx, sy], -1)[:, None, :].to(t.dtype)
            t = t + shift
            t = torch.stack([t[..., 0].clamp(0, w), t[..., 1].clamp(0, h), t[..., 2].clamp(0, w), t[..., 3].clamp(0, h)], -1)
        elif kind == "keypoints":
            x, yy = t[..., 0] + sx[:, None], t[..., 1] + sy[:, None]
            inside = (x >= 0) & (x <= w - 1) & (yy >= 0) & (yy <= h - 1)
            t = torch.stack([x, yy, torch.where(inside, t[..., 2], torch.zeros_like(t[..., 2]))], -1)
        out[name] = t
    return Targets(out, y.kinds)
