"""BadNets: a backdoor planted by poisoning a few training images (Gu, Dolan-Gavitt & Garg 2017).

The attacker stamps a small trigger (here a 4x4 black-and-white checkerboard near the
bottom-right corner) on a fraction `rate` of the training images and relabels them to the
`target` class. The trained model still looks fine on clean test images, yet sends almost any
image carrying the trigger to the target class:

    clean accuracy   accuracy on the clean test set (should stay where the unpoisoned model is)
    attack success   share of triggered test images of the *other* classes predicted as target
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from cnnlab.data.dataset import Dataset, Split
from cnnlab.errors import CnnlabError
from cnnlab.models import eval_mode

TRIGGER_SIZE = 4  # 4x4 = 2% of a 28x28 image: small, and unlike anything in an empty corner
TRIGGER_MARGIN = 1  # pixels between the trigger and the image border


def add_trigger(x: Tensor, size: int = TRIGGER_SIZE, margin: int = TRIGGER_MARGIN) -> Tensor:
    """A copy of x (N, C, H, W) in [0, 1] with the checkerboard trigger stamped in every channel."""
    n, c, h, w = x.shape
    if h < size + margin or w < size + margin:
        raise CnnlabError(f"images of {h}x{w} pixels are too small for a {size}x{size} trigger.")
    i, j = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    pattern = ((i + j) % 2 == 0).to(x.dtype).to(x.device)  # (size, size): 1 0 1 0 / 0 1 0 1 ...
    out = x.clone()
    out[:, :, h - margin - size : h - margin, w - margin - size : w - margin] = pattern
    return out


def poison(split: Split, rate: float, target: int, seed: int = 0) -> tuple[Split, Tensor]:
    """A copy of `split` in which round(rate * N) images not of class `target`, chosen at
    random, carry the trigger and the label `target`. Returns it and the poisoned indices."""
    if not 0 <= rate < 1:
        raise CnnlabError(f"the poisoning rate must be in [0, 1), got {rate}.")
    candidates = (split.y != target).nonzero().flatten()
    k = min(round(rate * len(split)), len(candidates))
    g = torch.Generator().manual_seed(seed)
    chosen = candidates[torch.randperm(len(candidates), generator=g)[:k]].sort().values
    x, y = split.x.clone(), split.y.clone()
    x[chosen] = add_trigger(x[chosen])
    y[chosen] = target
    return Split(x, y), chosen


def poisoned_dataset(data: Dataset, rate: float, target: int, seed: int = 0) -> Dataset:
    """`data` with a poisoned training split; validation and test stay clean."""
    train, chosen = poison(data.train, rate, target, seed)
    meta = {**data.meta, "poisoning": f"BadNets {len(chosen)} of {len(train)} training images -> class {target}"}
    return replace(data, name=f"{data.name}+badnets-{rate:g}", train=train, meta=meta)


@torch.no_grad()
def attack_success_rate(model: nn.Module, x: Tensor, y: Tensor, target: int, batch_size: int = 1000) -> float:
    """Share of images of the other classes that the trigger sends to `target` (model in eval mode)."""
    others = x[y != target]
    if len(others) == 0:
        raise CnnlabError(f"no test image outside the target class {target}: attack success is undefined.")
    device = next(model.parameters(), others).device
    with eval_mode(model):
        hits = sum(
            int((model(add_trigger(others[i : i + batch_size]).to(device)).argmax(1) == target).sum())
            for i in range(0, len(others), batch_size)
        )
    return hits / len(others)
