"""Your own images: one sub-folder of images per class, the layout of torchvision's ImageFolder.

    PATH/cat/001.png          or    PATH/train/cat/001.png
    PATH/dog/a/002.jpg              PATH/test/cat/...       (and PATH/val/..., optional)

Classes are the sub-folder names, sorted (hidden folders such as .ipynb_checkpoints are not
classes); images are found at any depth below them. With train/ and test/ folders those are
the splits, and val is carved from train unless val/ exists; otherwise the images are split
70/10/20 (stratified, seed 0). Every image goes through `read_image`, as `cnnlab predict` does:

- channels: 1 if every image is grayscale (L, LA, 1-bit, 16-bit), else 3;
- size: opts.image_size square, by default 28 for gray and 32 for color -- the MNIST and CIFAR
  sides every model here is built and tuned for. Images are stretched to the square, not
  cropped, so nothing the label depends on is cut away.

An unreadable file is skipped and named in a warning and in `meta['skipped']`
(on_corrupt='skip'), or stops the load with an error naming it (on_corrupt='error').
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

from cnnlab.data.dataset import Dataset, Split, stratified_split
from cnnlab.data.images import GRAY_MODES, IMAGE_SUFFIXES, image_mode, read_image
from cnnlab.data.registry import DataOptions, register_dataset
from cnnlab.errors import CnnlabError

GRAY_SIDE, COLOR_SIDE = 28, 32
TEST_FRACTION = 0.2

T = TypeVar("T")


@register_dataset("imagefolder", "your own images: PATH/<class>/*.png, or PATH/train/ and PATH/test/", takes_arg=True)
def imagefolder(arg: str | None, opts: DataOptions) -> Dataset:
    root = Path(arg or "").expanduser()
    if not root.is_dir():
        why = "is not a folder" if root.exists() else "does not exist"
        raise CnnlabError(f"imagefolder path {root} {why}; give a folder with one sub-folder of images per class.")
    has_splits = (root / "train").is_dir() and (root / "test").is_dir()
    trees = {p: root / p for p in ("train", "val", "test") if (root / p).is_dir()} if has_splits else {"all": root}
    main = trees["train" if has_splits else "all"]
    classes = sorted(d.name for d in main.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) < 2:
        raise CnnlabError(f"{main} has {len(classes)} class sub-folder(s); a classifier needs at least 2.")
    if not has_splits and opts.val_fraction + TEST_FRACTION >= 1:
        raise CnnlabError(f"imagefolder keeps {TEST_FRACTION:.0%} for test, so val_fraction must be below {1 - TEST_FRACTION:g}.")
    files = {part: _list_images(tree, classes, root) for part, tree in trees.items()}

    skipped: list[Path] = []
    modes = [m for fs in files.values() for p, _ in fs if (m := _tolerant(image_mode, p, opts, skipped)) is not None]
    channels = 1 if all(m in GRAY_MODES for m in modes) else 3
    side = opts.image_size or (GRAY_SIDE if channels == 1 else COLOR_SIDE)
    splits = {part: _read_split(fs, skipped, channels, side, opts) for part, fs in files.items()}
    skipped_names = ", ".join(str(p.relative_to(root)) for p in skipped)
    if skipped:
        warnings.warn(f"imagefolder skipped {len(skipped)} unreadable image(s) in {root}: {skipped_names}", stacklevel=2)
    _check_every_class_kept(splits["train" if has_splits else "all"], classes, main)

    if not has_splits:
        splits["train"], splits["val"], splits["test"] = _subsets(splits.pop("all"), (opts.val_fraction, TEST_FRACTION))
    elif "val" not in splits:
        splits["train"], splits["val"] = _subsets(splits["train"], (opts.val_fraction,))
    _check_no_split_empty(splits, root)
    layout = "train/ val/ test/ folders" if "val" in trees else "train/ test/ folders, val carved from train"
    return Dataset(
        name=f"imagefolder:{arg}",
        classes=classes,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        source=str(root.resolve()),
        licence="the user's own",
        meta={
            "layout": layout if has_splits else "one folder, split train / val / test, stratified, seed 0",
            "image_size": f"{channels}x{side}x{side}",
            **({"skipped": skipped_names} if skipped else {}),
        },
    )


def _list_images(tree: Path, classes: list[str], root: Path) -> list[tuple[Path, int]]:
    """(path, label) for every image file below tree/<class>/, in a stable order."""
    found = sorted(d.name for d in tree.iterdir() if d.is_dir() and not d.name.startswith("."))
    stray = [name for name in found if name not in classes]
    if stray:
        raise CnnlabError(f"{tree} has class folder(s) {', '.join(stray)} that train/ does not; make the class folders match.")
    return class_files(tree, classes, root, IMAGE_SUFFIXES, "images")


def class_files(tree: Path, classes: list[str], root: Path, suffixes: tuple[str, ...], what: str) -> list[tuple[Path, int]]:
    """(path, label) for every file ending in one of `suffixes` below tree/<class>/, in a stable
    order, leaving out what is hidden (a name starting with "." below `root`); one sentence
    naming `what` was looked for when there is none."""
    files = []
    for label, name in enumerate(classes):
        for p in sorted((tree / name).rglob("*")):
            hidden = any(part.startswith(".") for part in p.relative_to(root).parts)
            if p.suffix.lower() in suffixes and p.is_file() and not hidden:
                files.append((p, label))
    if not files:
        raise CnnlabError(f"{tree} holds no {what} (looked for {', '.join(suffixes)} below its class folders).")
    return files


def _tolerant(read: Callable[[Path], T], path: Path, opts: DataOptions, skipped: list[Path]) -> T | None:
    """read(path), or None after noting the path in `skipped` when on_corrupt is 'skip'."""
    if path in skipped:
        return None
    try:
        return read(path)
    except CnnlabError:
        if opts.on_corrupt == "error":
            raise
        skipped.append(path)
        return None


def _read_split(files: list[tuple[Path, int]], skipped: list[Path], channels: int, side: int, opts: DataOptions) -> Split:
    xs, ys = [], []
    for path, label in files:
        x = _tolerant(lambda p: read_image(p, channels, (side, side)), path, opts, skipped)
        if x is not None:
            xs.append(x)
            ys.append(label)
    x = torch.stack(xs) if xs else torch.empty(0, channels, side, side)
    return Split(x, torch.tensor(ys, dtype=torch.int64))


def _check_every_class_kept(split: Split, classes: list[str], tree: Path) -> None:
    counts = torch.bincount(split.y, minlength=len(classes))
    empty = [name for name, n in zip(classes, counts.tolist(), strict=True) if n == 0]
    if empty:
        raise CnnlabError(
            f"class folder(s) {', '.join(empty)} in {tree} hold no readable image; add images or remove the folder."
        )


def _check_no_split_empty(splits: dict[str, Split], root: Path) -> None:
    """Too few images leave a split empty: no batch to train on, or a test score of NaN (the
    mean over no image). An empty val split only means the best epoch is chosen on train."""
    for part in ("train", "test"):
        if len(splits[part]) == 0:
            raise CnnlabError(
                f"{root} has too few images for a {part} split (it would hold none); add images to each class."
            )


def _subsets(split: Split, fractions: tuple[float, ...]) -> list[Split]:
    return [Split(split.x[i], split.y[i]) for i in stratified_split(split.y, fractions, seed=0)]
