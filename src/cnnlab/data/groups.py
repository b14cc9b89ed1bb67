"""Which group each image belongs to, for the bias audit and for `--mitigate`.

A group is a label per image that is not the class: a built-in attribute of a dataset (the
tint of tinted-fashion-mnist), an attribute every image has (`brightness`), or a file the user
writes (one group name per line, in the order of the split's images).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from cnnlab.errors import CnnlabError

GroupFn = Callable[[Tensor, Tensor], Tensor]  # (x (N, C, H, W), y (N,)) -> group ids (N,)
ATTRIBUTES = ("group", "class", "brightness")


def dataset_groups(dataset: str) -> tuple[GroupFn, Callable[[list[str]], list[str]]] | None:
    """(group_ids, group_names) of a dataset that defines groups, else None."""
    if dataset == "tinted-fashion-mnist":
        from cnnlab.data import tinted

        return tinted.group_ids, tinted.group_names
    return None


def brightness_groups(x: Tensor) -> tuple[Tensor, list[str]]:
    """Thirds of the images by mean pixel value (dark / medium / bright), an attribute every
    image has: a model may err more on faint or on saturated pictures."""
    mean = x.mean(dim=(1, 2, 3))
    cuts = torch.quantile(mean, torch.tensor([1 / 3, 2 / 3], dtype=mean.dtype))
    return torch.bucketize(mean, cuts), ["dark third", "medium third", "bright third"]


def read_group_file(path: Path, n: int) -> tuple[Tensor, list[str]]:
    """Group names, one per line, for the n images of the split (blank lines are not skipped:
    a line is an image)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise CnnlabError(f"group file {path} does not exist; give one group name per line, one line per image.") from None
    except UnicodeDecodeError:
        raise CnnlabError(f"group file {path} is not text; give one group name per line, one line per image.") from None
    if len(lines) != n:
        raise CnnlabError(f"group file {path} has {len(lines)} lines but the split has {n} images: one line per image.")
    names = sorted(set(lines))
    index = {name: i for i, name in enumerate(names)}
    return torch.tensor([index[line] for line in lines]), names


def groups_for(spec: str | None, dataset: str, classes: list[str], x: Tensor, y: Tensor) -> tuple[Tensor, list[str], str]:
    """Group ids (N,), their names and a description, from `spec`: None (the dataset's own groups),
    'group', 'class', 'brightness', or a path to a group file."""
    own = dataset_groups(dataset)
    if spec in (None, "group"):
        if own is None:
            if spec is None:
                return y.clone(), list(classes), "class (the dataset defines no groups; try --groups brightness or FILE)"
            raise CnnlabError(f"dataset {dataset} defines no groups; use --groups class, brightness or a FILE of group names.")
        ids, names = own
        return ids(x, y), names(classes), f"the groups of {dataset}"
    if spec == "class":
        return y.clone(), list(classes), "class"
    if spec == "brightness":
        ids, names = brightness_groups(x)
        return ids, names, "brightness (thirds of mean pixel value)"
    path = Path(spec)
    if not path.exists() and "/" not in spec and "." not in spec:
        raise CnnlabError(f"--groups {spec} is neither an attribute ({', '.join(ATTRIBUTES)}) nor a file.")
    ids, names = read_group_file(path, len(y))
    return ids, names, f"file {path}"
