"""Targets of every kind move with the pixels, and index, hash and shard like images."""

from __future__ import annotations

import torch

from cnnlab.data import Split
from cnnlab.data.batches import augment, batches, epoch_order
from cnnlab.data.targets import IGNORE, Targets


def _scene(n: int = 8, size: int = 16) -> tuple[torch.Tensor, Targets]:
    """Images with one bright square each, and its mask, box and corner keypoint."""
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(n, 1, size, size)
    mask = torch.zeros(n, size, size, dtype=torch.int64)
    boxes = torch.zeros(n, 2, 4)  # one real box and one padding row per image
    labels = torch.full((n, 2), -1)
    points = torch.zeros(n, 1, 3)
    for i in range(n):
        top, left = (int(v) for v in torch.randint(3, size - 7, (2,), generator=g))
        x[i, 0, top : top + 4, left : left + 4] = 1.0
        mask[i, top : top + 4, left : left + 4] = 1
        boxes[i, 0] = torch.tensor([left, top, left + 4, top + 4])
        labels[i, 0] = 1
        points[i, 0] = torch.tensor([left, top, 1.0])
    y = Targets({"mask": mask, "boxes": boxes, "labels": labels, "points": points},
                {"mask": "mask", "boxes": "boxes", "labels": "label", "points": "keypoints"})
    return x, y


def _check_consistent(x: torch.Tensor, y: Targets) -> None:
    """The mask, the box and the keypoint still sit where the bright square is."""
    for i in range(len(x)):
        bright = x[i, 0] > 0.5
        rows, cols = torch.nonzero(bright, as_tuple=True)
        assert torch.equal(bright, y.get("mask")[i] == 1)
        x1, y1, x2, y2 = y.get("boxes")[i, 0].tolist()
        assert (x1, y1, x2, y2) == (cols.min().item(), rows.min().item(), cols.max().item() + 1, rows.max().item() + 1)
        px, py, visible = y.get("points")[i, 0].tolist()
        assert visible == 1.0 and bright[int(py), int(px)]
        assert y.get("labels")[i].tolist() == [1, -1]


def test_flip_and_crop_move_masks_boxes_and_keypoints() -> None:
    x, y = _scene()
    _check_consistent(x, y)
    xa, ya = augment(x, y, ("crop", "flip"), torch.Generator().manual_seed(3))
    assert not torch.equal(xa, x)  # something moved
    _check_consistent(xa, ya)


def test_crop_marks_pixels_from_the_padding_as_ignored() -> None:
    x, y = _scene(n=32)
    _, ya = augment(x, y, ("crop",), torch.Generator().manual_seed(1))
    assert (ya.get("mask") == IGNORE).any()  # some crop shifted the image: its border has no class


def test_targets_index_hash_and_batch_like_images() -> None:
    x, y = _scene()
    split = Split(x, y)
    assert len(split) == 8 and len(split.y[2:5]) == 3
    order = epoch_order(len(split), seed=0, epoch=0)
    got = list(batches(split.x, split.y, 3, order))
    assert [len(b) for _, b in got] == [3, 3, 2]
    assert torch.equal(torch.cat([b.get("boxes") for _, b in got]), y.get("boxes")[order])
    changed = y.clone()
    changed.get("boxes")[0, 0, 0] += 1
    assert Split(x, changed).sha256() != split.sha256()  # the hash covers every target field
    assert Split(x, y.clone()).sha256() == split.sha256()
