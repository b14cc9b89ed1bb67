"""CIFAR-10: 60,000 color 32x32 photos in 10 classes, 50,000 to train on and 10,000 to test.

Krizhevsky 2009, "Learning multiple layers of features from tiny images", ch. 3.

Read from the *binary* version (cifar-10-batches-bin): each record is 1 label byte then 3,072
pixel bytes, the red plane, then green, then blue, each 32x32 row-major -- already (C, H, W).
The better-known python version is a set of pickles, and unpickling a downloaded file can run
any code in it, so cnnlab never reads those.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cnnlab.data.dataset import Dataset, Split, stratified_split
from cnnlab.data.download import cache_dir, download_files
from cnnlab.data.registry import DataOptions, register_dataset, search_dirs
from cnnlab.errors import CnnlabError

FOLDER = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
META_FILE = "batches.meta.txt"
URL = "https://www.cs.toronto.edu/~kriz/"
ARCHIVE = ("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530")  # name, MD5
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
RECORD = 1 + 3 * 32 * 32
HINT = (
    f"download {URL}{ARCHIVE[0]} on a machine that is online and unpack it into --data-dir or "
    f"$CNNLAB_DATA (cnnlab reads the binary version, the folder {FOLDER})"
)


@register_dataset("cifar10", "60,000 color 32x32 photos, 10 classes, 50k train / 10k test (binary version)")
def cifar10(arg: str | None, opts: DataOptions) -> Dataset:
    folder = _find_or_download(opts)
    x, y = _read_batches([folder / f for f in TRAIN_FILES])
    x_test, y_test = _read_batches([folder / TEST_FILE])
    classes = _read_classes(folder / META_FILE)
    if int(max(y.max(), y_test.max())) >= len(classes):
        raise CnnlabError(f"{folder} has labels beyond its {len(classes)} classes in {META_FILE}.")
    train_idx, val_idx = stratified_split(y, (opts.val_fraction,), seed=0)
    return Dataset(
        name="cifar10",
        classes=classes,
        train=Split(x[train_idx], y[train_idx]),
        val=Split(x[val_idx], y[val_idx]),
        test=Split(x_test, y_test),
        source=str(folder),
        licence="unknown (Krizhevsky 2009; free for research)",
        meta={
            "homepage": "https://www.cs.toronto.edu/~kriz/cifar.html",
            "val": f"{opts.val_fraction:g} of the training batches, stratified, seed 0",
        },
    )


def _find_or_download(opts: DataOptions) -> Path:
    """The folder of the binary batches: in --data-dir alone when it is given (no other copy may
    stand in for it), else in $CNNLAB_DATA or the download cache; downloaded if absent."""
    bases = search_dirs("cifar10", opts)
    for base in bases:
        for folder in (base / FOLDER, base):  # the unpacked archive, or --data-dir pointing into it
            if all((folder / f).is_file() for f in (*TRAIN_FILES, TEST_FILE)):
                return folder
    for base in bases:
        if (base / "cifar-10-batches-py").is_dir():
            raise CnnlabError(
                f"found the python version of CIFAR-10 in {base / 'cifar-10-batches-py'}, which cnnlab does not read "
                f"(unpickling a download can run code): {HINT}."
            )
    root = (opts.data_dir or cache_dir()) / "cifar10"
    download_files("cifar10", [ARCHIVE], [URL], root, HINT, opts.download, extract=True)
    return root / FOLDER


def _read_batches(paths: list[Path]) -> tuple[Tensor, Tensor]:
    """Images (N, 3, 32, 32) float32 in [0, 1] and labels (N,) int64 from binary batch files."""
    records = []
    for path in paths:
        raw = np.fromfile(path, dtype=np.uint8)
        if len(raw) == 0 or len(raw) % RECORD:
            raise CnnlabError(
                f"{path} is corrupt or truncated: a CIFAR-10 binary batch holds records of {RECORD} bytes, "
                f"but it has {len(raw)} bytes."
            )
        records.append(raw.reshape(-1, RECORD))
    table = torch.from_numpy(np.concatenate(records))
    x = table[:, 1:].reshape(-1, 3, 32, 32).float().div_(255)
    return x, table[:, 0].long()


def _read_classes(path: Path) -> list[str]:
    """One class name a line (the file ends in blank lines); the standard ten if it is absent."""
    if not path.is_file():
        return CLASSES
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]
