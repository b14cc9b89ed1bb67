"""Datasets by name: `load_data("fashion-mnist")` -> a `Dataset` of in-memory tensors.

Loaders register themselves with `@register_dataset`. A name may carry an argument after a
colon (`imagefolder:PATH`), handed to the loader as `arg`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.data.dataset import Dataset
from cnnlab.data.download import cache_dir
from cnnlab.errors import CnnlabError, unknown_name


@dataclass(frozen=True)
class DataOptions:
    data_dir: Path | None = None  # an existing folder: the only place looked in (and downloaded to)
    val_fraction: float = 0.1  # share of the training data held out for validation
    image_size: int | None = None  # imagefolder: resize to this side (default: see its loader)
    on_corrupt: str = "skip"  # imagefolder: 'skip' (report by name) or 'error'
    download: bool = field(default_factory=lambda: os.environ.get("CNNLAB_OFFLINE", "") in ("", "0"))


Loader = Callable[[str | None, DataOptions], Dataset]


def search_dirs(name: str, opts: DataOptions, system: tuple[Path, ...] = ()) -> list[Path]:
    """Where a loader looks for dataset `name`'s files, in order: --data-dir and its `name`
    sub-folder alone when it is given (no other copy may stand in for it); else $CNNLAB_DATA and
    its sub-folder, then `name` in each `system` folder and in the download cache."""
    if opts.data_dir:
        return [opts.data_dir, opts.data_dir / name]
    env = os.environ.get("CNNLAB_DATA")
    dirs = [Path(env).expanduser(), Path(env).expanduser() / name] if env else []
    dirs += [d / name for d in system] + [cache_dir() / name]
    return list(dict.fromkeys(dirs))  # $CNNLAB_DATA is also the cache: look once


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    loader: Loader
    description: str
    takes_arg: bool  # True for 'imagefolder:PATH'


_REGISTRY: dict[str, DatasetEntry] = {}


def register_dataset(name: str, description: str, takes_arg: bool = False) -> Callable[[Loader], Loader]:
    def wrap(loader: Loader) -> Loader:
        _REGISTRY[name] = DatasetEntry(name, loader, description, takes_arg)
        return loader

    return wrap


def _load_families() -> None:
    from cnnlab.data import (  # noqa: F401
        cifar,
        coco,
        coco_keypoints,
        context_scenes,
        digits,
        fashion_scenes,
        imagefolder,
        mnist,
        moving_actions,
        moving_objects,
        shapes,
        stick_figures,
        tinted,
        videofolder,
    )


def dataset_entries() -> list[DatasetEntry]:
    _load_families()
    return list(_REGISTRY.values())


def load_data(
    name: str,
    data_dir: str | Path | None = None,
    val_fraction: float = 0.1,
    image_size: int | None = None,
    on_corrupt: str = "skip",
    download: bool | None = None,
) -> Dataset:
    """Load a dataset by name into memory (train / val / test splits, pixels in [0, 1]).

    `data_dir`, when given, must exist and is the only place a loader looks for the files (and
    downloads them to): no other copy is read in its stead. `download=None` downloads when
    needed unless the environment says CNNLAB_OFFLINE=1.
    """
    _load_families()
    base, _, arg = name.partition(":")
    if base not in _REGISTRY:
        raise unknown_name("dataset", name, [e.name + (":PATH" if e.takes_arg else "") for e in _REGISTRY.values()])
    entry = _REGISTRY[base]
    if entry.takes_arg and not arg:
        raise CnnlabError(f"dataset '{base}' needs a path: use {base}:PATH.")
    if not entry.takes_arg and arg:
        raise CnnlabError(f"dataset '{base}' takes no argument; use '{base}'.")
    if not 0.0 <= val_fraction < 1.0:
        raise CnnlabError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    if on_corrupt not in ("skip", "error"):
        raise CnnlabError(f"on_corrupt must be 'skip' or 'error', got '{on_corrupt}'.")
    folder = Path(data_dir).expanduser() if data_dir else None
    if folder is not None and not folder.is_dir():  # a typo must not quietly read another copy
        problem = "is a file, not a folder" if folder.exists() else "does not exist"
        raise CnnlabError(f"data folder {folder} {problem}; create it, or drop --data-dir to use the usual places.")
    opts = DataOptions(
        data_dir=folder,
        val_fraction=val_fraction,
        image_size=image_size,
        on_corrupt=on_corrupt,
        **({} if download is None else {"download": download}),
    )
    return entry.loader(arg or None, opts)
