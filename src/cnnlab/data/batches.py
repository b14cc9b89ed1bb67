"""Mini-batches straight from in-memory tensors, and augmentation applied to whole batches.

No DataLoader and no per-sample Python transform on the hot path: slicing a tensor is all a
batch costs (a torchvision DataLoader with `ToTensor` alone costs 4-6 s per Fashion-MNIST
epoch on 2 cores, about as much as training LeNet-5 itself).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from cnnlab.data.targets import Targets, flip_targets, shift_targets

AUGMENTATIONS = ("crop", "flip")


def epoch_order(n: int, seed: int, epoch: int) -> Tensor:
    """The shuffled sample order of one epoch, a pure function of (seed, epoch).

    Deriving it instead of drawing from a running generator is what lets a run resume
    mid-epoch exactly: the resumed process recomputes the same order and skips what was done.
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def batches(
    x: Tensor,
    y: Tensor,
    batch_size: int,
    order: Tensor | None = None,
    start: int = 0,
    drop_last: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield (x, y) batches in `order` (default: as stored), beginning at batch number `start`."""
    n = len(y)
    stop = n - n % batch_size if drop_last else n
    for i in range(start * batch_size, stop, batch_size):
        if order is None:
            yield x[i : i + batch_size], y[i : i + batch_size]
        else:
            idx = order[i : i + batch_size]
            yield x[idx], y[idx]


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


def parse_augment(spec: str) -> tuple[str, ...]:
    """'crop,flip' -> ('crop', 'flip'); 'none' or '' -> ()."""
    from cnnlab.errors import CnnlabError

    ops = tuple(s.strip() for s in spec.split(",") if s.strip() and s.strip() != "none")
    for op in ops:
        if op not in AUGMENTATIONS:
            raise CnnlabError(
                f"unknown augmentation '{op}'; choose from {', '.join(AUGMENTATIONS)} "
                "(comma-separated) or 'none'."
            )
    return ops


def crop_offsets(n: int, padding: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Per-image offsets (dy, dx), each (N, 1) in [0, 2 * padding], of a random crop."""
    dy = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator, device="cpu")
    dx = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator, device="cpu")
    return dy, dx


def random_crop(x: Tensor, padding: int, dy: Tensor, dx: Tensor) -> Tensor:
    """Zero-pad each image by `padding` and cut it back at its own offset (dy, dx).

    One gather for the whole batch. x: (N, C, H, W) -> (N, C, H, W)
    """
    n, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    rows = (torch.arange(h, device=x.device) + dy)[:, None, :, None]  # (N, 1, H, 1)
    cols = (torch.arange(w, device=x.device) + dx)[:, None, None, :]  # (N, 1, 1, W)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def augment(x: Tensor, y: Tensor | Targets, ops: tuple[str, ...], generator: torch.Generator,
            mirror: Tensor | None = None) -> tuple[Tensor, Tensor | Targets]:
    """Apply the named augmentations to a whole batch, moving the targets with the pixels
    (boxes, masks, keypoints; class labels do not move, a flip may rename them). Crop padding is 1/8 of the image side
    (4 px at 32, 3 px at 28), the usual CIFAR recipe scaled to the image.

    x: images (N, C, H, W) or clips (N, T, C, H, W); every frame of a clip is cropped and
    flipped as its first one, so the motion between frames is kept. A flip mirrors motion too:
    on data whose classes are directions (left/right), it turns one class into another, which
    `mirror` (K,) names (`targets.mirror_order` of the class names); flipped labels follow it."""
    if "crop" in ops:
        padding = max(1, x.shape[-1] // 8)
        dy, dx = crop_offsets(len(x), padding, generator)
        dy, dx = dy.to(x.device), dx.to(x.device)
        x = random_crop(x.flatten(1, -3), padding, dy, dx).view(x.shape)  # a clip's frames as channels: one offset
        y = shift_targets(y, dy, dx, padding, (x.shape[-2], x.shape[-1]))
    if "flip" in ops:
        flip = torch.rand(len(x), generator=generator, device="cpu").to(x.device) < 0.5  # each image with p = 1/2
        x = torch.where(flip.view(-1, *[1] * (x.ndim - 1)), x.flip(-1), x)
        y = flip_targets(y, flip, x.shape[-1], mirror)
    return x, y
