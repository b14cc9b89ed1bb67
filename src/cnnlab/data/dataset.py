"""A dataset held in memory: three splits of tensors plus what describes them.

Every loader in `cnnlab.data` returns a `Dataset`. Images are float32 pixels in [0, 1],
shaped (N, C, H, W); a classifier's targets are int64 class indices, other tasks' targets a
`Targets` (boxes, masks, keypoints: see targets.py). A dataset names the task its targets
serve (`cnnlab.tasks`). Normalisation is not applied here: it is
the model's own first layer (`cnnlab.models.Normalize`), so every tool works in pixel space.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from torch import Tensor

from cnnlab.data.targets import Targets, target_tensors


@dataclass
class Split:
    x: Tensor  # (N, C, H, W) float32 in [0, 1]; clips: (N, T, C, H, W), T frames each
    y: Tensor | Targets  # classify: (N,) int64 in [0, num_classes); other tasks: Targets

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str) -> Split:
        """The split on `device`; to a GPU through pinned memory (one DMA copy, no staging)."""
        if torch.device(device).type == "cuda" and not self.x.is_cuda:
            return Split(self.x.pin_memory().to(device, non_blocking=True), self.y.pin_memory().to(device, non_blocking=True))
        return Split(self.x.to(device), self.y.to(device))

    def sha256(self) -> str:
        """Hash of the pixels and targets exactly as trained on (provenance, `cnnlab verify`)."""
        h = hashlib.sha256()
        for t in (self.x, *target_tensors(self.y)):
            t = t.detach().cpu().contiguous()
            h.update(str((tuple(t.shape), str(t.dtype))).encode())
            h.update(t.numpy())  # its buffer as is: tobytes() copied it first (0.2 s for Fashion-MNIST)
        return h.hexdigest()


@dataclass
class Dataset:
    name: str
    classes: list[str]
    train: Split
    val: Split
    test: Split
    source: str = ""  # where the files came from: a path or a URL
    licence: str = "unknown"
    meta: dict[str, str] = field(default_factory=dict)  # anything else worth recording
    task: str = "classify"  # what the targets are for: a name in cnnlab.tasks
    other_tasks: tuple[str, ...] = ()  # further tasks the same targets serve (shapes: segment and detect)
    _stats: tuple[Tensor, list[float], list[float]] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W) of an image, or (T, C, H, W) of a clip of T frames."""
        return tuple(int(v) for v in self.train.x.shape[1:])

    @property
    def tasks(self) -> tuple[str, ...]:
        return (self.task, *self.other_tasks)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def splits(self) -> dict[str, Split]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the training pixels (what the model's Normalize uses).
        Kept for the training tensor they were computed on: a training asks twice (the model's
        Normalize, provenance.json), and each pass over Fashion-MNIST costs ~0.06 s."""
        x = self.train.x
        if self._stats is None or self._stats[0] is not x:
            dims = tuple(d for d in range(x.ndim) if d != x.ndim - 3)  # all but C, of images and of clips
            mean = x.mean(dim=dims)
            std = x.std(dim=dims).clamp_min(1e-3)  # a constant channel must not divide by 0
            self._stats = (x, mean.tolist(), std.tolist())
        return list(self._stats[1]), list(self._stats[2])

    def sha256(self) -> dict[str, str]:
        return {name: split.sha256() for name, split in self.splits().items()}


def held_out(x: Tensor, y: Tensor | Targets, val_fraction: float) -> tuple[Split, Split]:
    """(train, val) of a generated training draw: its first `val_fraction` held out for
    validation (a seeded generator's examples come in no order worth stratifying)."""
    n_val = round(val_fraction * len(x))
    return Split(x[n_val:], y[n_val:]), Split(x[:n_val], y[:n_val])


def stratified_split(
    y: Tensor, fractions: tuple[float, ...], seed: int = 0
) -> list[Tensor]:
    """Indices of a seeded split in which every class keeps its share in every part.

    `fractions` gives the share of all but the first part, e.g. (0.1, 0.2) returns
    [train 70%, val 10%, test 20%] index tensors, each sorted.
    """
    g = torch.Generator().manual_seed(seed)
    parts: list[list[Tensor]] = [[] for _ in range(len(fractions) + 1)]
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        start = 0
        sizes = [round(f * len(idx)) for f in fractions]
        for k, size in enumerate(sizes, start=1):
            parts[k].append(idx[start : start + size])
            start += size
        parts[0].append(idx[start:])
    return [torch.cat(p).sort().values for p in parts]
