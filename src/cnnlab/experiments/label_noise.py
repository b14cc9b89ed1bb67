"""The label-noise experiment: can self-influence find the mislabelled training images?

Pruthi et al. 2020 (sec. 4.1) flip a share of the training labels, train, and inspect the
training images in decreasing self-influence: the flipped ones come first. We measure the
precision of the top `flip` share (if 5% are flipped, how many of the top 5% are flipped?)
against the base rate (5%: what a random ranking finds), next to the plain baseline of
ranking by the final model's loss on each image.

TracIn here is the CPU-practical form (tracin.py): gradients of the last linear layer only, at
one checkpoint per epoch, each weighted by that epoch's mean learning rate.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from cnnlab.data import Dataset, Split, load_data
from cnnlab.errors import CnnlabError
from cnnlab.explain import runs as explain_runs
from cnnlab.explain.tracin import kept_checkpoints, self_influence
from cnnlab.models import eval_mode


def flip_labels(y: Tensor, share: float, num_classes: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(noisy y, flipped indices): round(share * N) labels, chosen at random, each moved to a
    different class, also at random. Seeded: the same call flips the same labels."""
    if not 0 < share < 1:
        raise CnnlabError(f"--flip must be a share between 0 and 1 (e.g. 0.05), got {share}.")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(y), generator=g)[: round(share * len(y))]
    shift = torch.randint(1, num_classes, (len(idx),), generator=g)  # never 0: the label really changes
    noisy = y.clone()
    noisy[idx] = (y[idx] + shift) % num_classes
    return noisy, idx.sort().values


def precision_at(scores: Tensor, flipped: Tensor, k: int) -> float:
    """Share of flipped images among the k highest scores."""
    top = scores.topk(k).indices
    return float(torch.isin(top, flipped).float().mean())


@dataclass
class LabelNoiseResult:
    data: str
    model: str
    epochs: int
    train_images: int
    flipped: int
    base_rate: float  # the flipped share: a random ranking's expected precision
    precision_tracin: float  # of the top `flipped` images by TracIn self-influence
    precision_loss: float  # of the top `flipped` images by the final model's loss
    checkpoints: int
    test_acc: float
    train_seconds: float
    rank_seconds: float
    run: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def per_example_loss(model: torch.nn.Module, x: Tensor, y: Tensor, batch_size: int = 1024) -> Tensor:
    with torch.no_grad(), eval_mode(model):
        return torch.cat([
            F.cross_entropy(model(x[i : i + batch_size]), y[i : i + batch_size], reduction="none")
            for i in range(0, len(x), batch_size)
        ])


def label_noise(
    data: str | Dataset = "fashion-mnist", flip: float = 0.05, *, model: str = "lenet5", epochs: int = 3,
    batch_size: int = 128, seed: int = 0, out: str | Path = "runs/label-noise", quiet: bool = True,
    overwrite: bool = False,
) -> LabelNoiseResult:
    """Flip `flip` of the training labels (seeded), train `model` keeping one checkpoint per
    epoch, rank the training images by TracIn self-influence and by loss, and score both.
    The result is also written to RUN/explain/label-noise.json (the report reads it)."""
    from cnnlab.training import TrainConfig, train

    dataset = load_data(data) if isinstance(data, str) else data
    noisy_y, flipped = flip_labels(dataset.train.y, flip, dataset.num_classes, seed)
    noisy = replace(dataset, train=Split(dataset.train.x, noisy_y), meta={**dataset.meta, "label_noise": f"{flip} seed {seed}"})
    config = TrainConfig(
        model=model, data=dataset.name, epochs=epochs, batch_size=batch_size, seed=seed, keep_checkpoints=True
    )
    start = time.perf_counter()
    run = train(config, data=noisy, out=out, overwrite=overwrite, quiet=quiet)  # experiments/folder.py: the one rule
    train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    x, y = noisy.train.x, noisy.train.y
    loss = per_example_loss(run.model, x, y)  # by the final weights
    checkpoints = kept_checkpoints(run.path)
    scores = self_influence(run.model, checkpoints, x, y)
    rank_seconds = time.perf_counter() - start
    k = len(flipped)
    test = run.test_result()
    result = LabelNoiseResult(
        data=dataset.name, model=model, epochs=epochs, train_images=len(y), flipped=k, base_rate=k / len(y),
        precision_tracin=precision_at(scores, flipped, k), precision_loss=precision_at(loss, flipped, k),
        checkpoints=len(checkpoints), test_acc=test["test_acc"], train_seconds=train_seconds,
        rank_seconds=rank_seconds, run=str(run.path),
    )
    explain_runs.save(run, "label-noise", result.to_dict())
    return result
