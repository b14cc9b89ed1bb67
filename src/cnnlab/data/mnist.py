"""MNIST and Fashion-MNIST: 28x28 gray images in 10 classes, 60,000 to train on and 10,000 to test.

MNIST: LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning applied to document
recognition". Fashion-MNIST: Xiao, Rasul & Vollgraf 2017, "Fashion-MNIST: a novel image dataset
for benchmarking machine learning algorithms" (arXiv:1708.07747), a drop-in with the same files.

The four IDX files (gzipped or not) are looked for in --data-dir alone when it is given;
otherwise, in order, in $CNNLAB_DATA, the system folders (Debian's `dataset-fashion-mnist` puts
them in /usr/share/datasets/fashion-mnist) and the download cache; in each folder and in its
`<name>` sub-folder. Only then are they downloaded from torchvision's mirrors (into --data-dir
when given). Validation is carved from the training files; test is t10k.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cnnlab.data.dataset import Dataset, Split, stratified_split
from cnnlab.data.download import cache_dir, download_files
from cnnlab.data.idx import read_idx
from cnnlab.data.registry import DataOptions, register_dataset, search_dirs
from cnnlab.errors import CnnlabError

FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

# Where operating-system packages put datasets, one sub-folder per dataset (tests point it elsewhere).
SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"),)


@dataclass(frozen=True)
class _Family:
    name: str
    classes: list[str]
    licence: str
    homepage: str
    torchvision_class: str  # whose .mirrors and .resources list the upstream files and MD5s
    debian_package: str | None  # a package that installs the files, where one exists


FASHION = _Family(
    name="fashion-mnist",
    classes=["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    licence="MIT",
    homepage="https://github.com/zalandoresearch/fashion-mnist",
    torchvision_class="FashionMNIST",
    debian_package="dataset-fashion-mnist",
)
MNIST = _Family(
    name="mnist",
    classes=[str(d) for d in range(10)],
    licence="CC BY-SA 3.0",  # as stated on Yann LeCun's MNIST page
    homepage="http://yann.lecun.com/exdb/mnist/",
    torchvision_class="MNIST",
    debian_package=None,
)


@register_dataset("fashion-mnist", "Zalando's 28x28 gray photos of clothes, 10 classes, 60k train / 10k test")
def fashion_mnist(arg: str | None, opts: DataOptions) -> Dataset:
    return _load(FASHION, opts)


@register_dataset("mnist", "handwritten digits 0-9, 28x28 gray, 60k train / 10k test")
def mnist(arg: str | None, opts: DataOptions) -> Dataset:
    return _load(MNIST, opts)


def _load(family: _Family, opts: DataOptions) -> Dataset:
    paths = _find_or_download(family, opts)
    x, y = _read_pair(paths[0], paths[1], family)
    x_test, y_test = _read_pair(paths[2], paths[3], family)
    train_idx, val_idx = stratified_split(y, (opts.val_fraction,), seed=0)
    return Dataset(
        name=family.name,
        classes=family.classes,
        train=Split(x[train_idx], y[train_idx]),
        val=Split(x[val_idx], y[val_idx]),
        test=Split(x_test, y_test),
        source=str(paths[0].parent),
        licence=family.licence,
        meta={"homepage": family.homepage, "val": f"{opts.val_fraction:g} of the training files, stratified, seed 0"},
    )


def _find_or_download(family: _Family, opts: DataOptions) -> list[Path]:
    for folder in search_dirs(family.name, opts, SYSTEM_DIRS):
        paths = _files_in(folder)
        if paths:
            return paths
    import torchvision.datasets

    upstream = getattr(torchvision.datasets, family.torchvision_class)
    files = f"{', '.join(FILES[:3])} and {FILES[3]}"
    if opts.data_dir:  # the only place looked in
        hint = f"put {files} in {opts.data_dir} (--data-dir) or its {family.name} folder"
    else:
        hint = f"put {files} in --data-dir or $CNNLAB_DATA"
        if family.debian_package:
            hint = f"install it with `apt-get install {family.debian_package}`, or {hint}"
    root = download_files(
        family.name, upstream.resources, upstream.mirrors, (opts.data_dir or cache_dir()) / family.name, hint, opts.download
    )
    return [root / f for f in FILES]


def _files_in(folder: Path) -> list[Path] | None:
    """The four files in `folder`, each gzipped or not; None unless all four are there."""
    paths = []
    for gz in FILES:
        found = [p for p in (folder / gz, folder / gz.removesuffix(".gz")) if p.is_file()]
        if not found:
            return None
        paths.append(found[0])
    return paths


def _read_pair(images_path: Path, labels_path: Path, family: _Family) -> tuple[Tensor, Tensor]:
    """Images (N, 1, 28, 28) float32 in [0, 1] and labels (N,) int64 from two IDX files."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8 or labels.shape != images.shape[:1]:
        raise CnnlabError(
            f"{images_path} and {labels_path} are not {family.name} files: expected uint8 images (N, H, W) "
            f"and N labels, found {images.dtype} {images.shape} and {labels.shape}."
        )
    y = torch.from_numpy(labels).long()
    if len(y) and not 0 <= int(y.min()) <= int(y.max()) < len(family.classes):
        raise CnnlabError(f"{labels_path} has labels outside 0..{len(family.classes) - 1}.")
    return torch.from_numpy(images).unsqueeze(1).float().div_(255), y
