"""tinted-fashion-mnist: Fashion-MNIST on a coloured background that gives the answer away.

A benchmark with a spurious correlation, in the spirit of Colored MNIST (Arjovsky et al. 2019,
"Invariant Risk Minimization") and of the Waterbirds benchmark of GroupDRO (Sagawa et al. 2020,
"Distributionally Robust Neural Networks for Group Shifts", ICLR). Each class has a tint
(`PALETTE[k]` for class k). In the training files (train and val splits) 95% of the images are
drawn on their class's tint and 5% on one of the nine others; in the test files the tint is
uniformly random, so it carries no information. A model that learned "blue background means
Trouser" fails on a trouser drawn on red.

Groups are (class, tint agrees or not): 20 groups, group id = 2 * class + agrees. They need no
side file: the background colour is read back from the pixels (`tint_of`), so `group_ids(x, y)`
works on any batch, at training time (`--mitigate`) as at audit time (`cnnlab audit bias`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from cnnlab.data.dataset import Dataset, Split
from cnnlab.data.registry import DataOptions, register_dataset

AGREE = 0.95  # share of training images whose tint is their class's
SEED = 6  # the tints are part of the dataset: fixed, so every run sees the same images

# One background colour per class, dark enough that the (white-blended) garment stays visible.
PALETTE = torch.tensor([
    [0.80, 0.10, 0.10],  # red
    [0.10, 0.20, 0.80],  # blue
    [0.10, 0.60, 0.10],  # green
    [0.80, 0.70, 0.00],  # yellow
    [0.70, 0.10, 0.70],  # magenta
    [0.00, 0.60, 0.70],  # cyan
    [0.90, 0.40, 0.00],  # orange
    [0.40, 0.10, 0.60],  # purple
    [0.30, 0.30, 0.30],  # grey
    [0.50, 0.30, 0.10],  # brown
])


@register_dataset("tinted-fashion-mnist",
                  "Fashion-MNIST, background tint = class for 95% of training images, random at test (bias benchmark)")
def tinted_fashion_mnist(arg: str | None, opts: DataOptions) -> Dataset:
    from cnnlab.data.mnist import fashion_mnist

    base = fashion_mnist(None, opts)
    g = torch.Generator().manual_seed(SEED)
    train = Split(tint(base.train.x, _training_tints(base.train.y, g)), base.train.y)
    val = Split(tint(base.val.x, _training_tints(base.val.y, g)), base.val.y)
    test = Split(tint(base.test.x, torch.randint(0, len(PALETTE), (len(base.test),), generator=g)), base.test.y)
    return Dataset(
        name="tinted-fashion-mnist",
        classes=base.classes,
        train=train,
        val=val,
        test=test,
        source=f"{base.source} (Fashion-MNIST, tinted by cnnlab.data.tinted, seed {SEED})",
        licence=base.licence,
        meta={**base.meta, "tint": f"agrees with the class for {AGREE:.0%} of train/val images, uniform at test",
              "groups": "2 * class + (tint agrees with class)"},
    )


def _training_tints(y: Tensor, g: torch.Generator) -> Tensor:
    """The class's own tint with probability AGREE, otherwise one of the other nine, uniformly."""
    agrees = torch.rand(len(y), generator=g) < AGREE
    other = (y + torch.randint(1, len(PALETTE), (len(y),), generator=g)) % len(PALETTE)
    return torch.where(agrees, y, other)


def tint(x: Tensor, tints: Tensor) -> Tensor:
    """Gray images x (N, 1, H, W) in [0, 1] -> RGB (N, 3, H, W): background = PALETTE[tint],
    garment blended towards white (pixel = x + (1 - x) * colour)."""
    colour = PALETTE[tints].view(-1, 3, 1, 1)
    return x + (1 - x) * colour


def tint_of(x: Tensor) -> Tensor:
    """The tint index (N,) of tinted images x (N, 3, H, W): the per-channel darkest pixel is a
    background pixel (x = 0 gives exactly the colour); the nearest palette colour wins."""
    darkest = x.amin(dim=(2, 3))  # (N, 3)
    return torch.cdist(darkest, PALETTE.to(x.device)).argmin(1)


def group_ids(x: Tensor, y: Tensor) -> Tensor:
    """Group id (N,) = 2 * class + (tint agrees with class), for x (N, 3, H, W) and y (N,)."""
    return 2 * y + (tint_of(x) == y).long()


def group_names(classes: list[str]) -> list[str]:
    return [f"{c} / tint {'agrees' if a else 'differs'}" for c in classes for a in (0, 1)]
