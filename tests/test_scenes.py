"""context-scenes and fashion-scenes: the same bytes for the same seed, targets that match the
drawn pixels, and look-alike classes that really look alike."""

from __future__ import annotations

import torch

from cnnlab.data import context_scenes, fashion_scenes
from cnnlab.data.targets import Targets


def _same(a: tuple[torch.Tensor, Targets], b: tuple[torch.Tensor, Targets]) -> bool:
    return torch.equal(a[0], b[0]) and all(torch.equal(a[1].get(f), b[1].get(f)) for f in a[1].fields)


def _boxes_fit_masks(mask: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor) -> None:
    """Every box is the tight box of its class's pixels in the class map, when that class has
    one object in the image (two of a class may share pixels of the map)."""
    for m, bs, ls in zip(mask, boxes, labels, strict=True):
        for b, label in zip(bs, ls, strict=True):
            if label < 0:
                assert b.abs().sum() == 0  # padding rows are zeros
                continue
            if (ls == label).sum() > 1:
                continue
            ys, xs = torch.nonzero(m == label, as_tuple=True)
            assert b.tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


def test_context_scenes_are_deterministic() -> None:
    assert _same(context_scenes.scenes(20, seed=3), context_scenes.scenes(20, seed=3))
    assert not torch.equal(context_scenes.scenes(20, seed=3)[0], context_scenes.scenes(20, seed=4)[0])


def test_context_scene_boxes_match_the_objects() -> None:
    x, y = context_scenes.scenes(60, seed=0)
    mask, boxes, labels = y.get("mask"), y.get("boxes"), y.get("labels")
    assert (labels >= 0).any() and ((labels < 0) | (labels >= context_scenes.BALL)).all()
    _boxes_fit_masks(mask, boxes, labels)
    # every object pixel in the map belongs to a box of its class
    for m, ls in zip(mask, labels, strict=True):
        assert set(m[m >= context_scenes.BALL].unique().tolist()) == set(ls[ls >= 0].tolist())


def test_context_scenes_pair_each_look_alike_with_its_cue() -> None:
    """A beach has water and sand, a street buildings and road, never a mix."""
    _, y = context_scenes.scenes(60, seed=1)
    for m in y.get("mask"):
        present = set(m.unique().tolist())
        beach, street = {context_scenes.WATER, context_scenes.SAND}, {context_scenes.BUILDINGS, context_scenes.ROAD}
        assert beach <= present and not present & street or street <= present and not present & beach


def test_sand_and_road_share_one_look() -> None:
    """Per-channel mean and std of sand pixels and of road pixels agree within 0.02 (on [0, 1]),
    while water and buildings, the cues, differ from them by far more."""
    x, y = context_scenes.scenes(400, seed=2)
    mask = y.get("mask")

    def stats(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = x.permute(0, 2, 3, 1)[mask == k]  # (P, 3)
        return pixels.mean(0), pixels.std(0)

    (sand_mean, sand_std), (road_mean, road_std) = stats(context_scenes.SAND), stats(context_scenes.ROAD)
    assert (sand_mean - road_mean).abs().max() < 0.02 and (sand_std - road_std).abs().max() < 0.02
    for cue in (context_scenes.WATER, context_scenes.BUILDINGS):
        assert (stats(cue)[0] - sand_mean).abs().max() > 0.1


def test_context_scenes_honour_image_size() -> None:
    x, y = context_scenes.scenes(4, seed=0, side=48)
    assert x.shape == (4, 3, 48, 48) and y.get("mask").shape == (4, 48, 48)


def _items(n: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """Blank 28x28 images, each with a bright rectangle of its own size (and one dim pixel
    below the threshold, which is not the item)."""
    g = torch.Generator().manual_seed(0)
    items = torch.zeros(n, 1, 28, 28)
    for i in range(n):
        x1, y1 = torch.randint(0, 10, (2,), generator=g).tolist()
        items[i, 0, y1:y1 + 10 + i % 8, x1:x1 + 8 + i % 10] = 0.5 + 0.5 * torch.rand(1, generator=g)
        items[i, 0, 27, 27] = fashion_scenes.THRESHOLD / 2
    return items, torch.arange(n) % 10


def test_fashion_scenes_are_deterministic() -> None:
    items, classes = _items()
    assert _same(fashion_scenes.scenes(items, classes, 20, seed=5), fashion_scenes.scenes(items, classes, 20, seed=5))


def test_fashion_scene_masks_and_boxes_come_from_the_items_pixels() -> None:
    items, classes = _items()
    x, y = fashion_scenes.scenes(items, classes, 40, seed=0)
    mask, boxes, labels = y.get("mask"), y.get("boxes"), y.get("labels")
    assert ((labels >= 0).sum(1) >= 2).all() and ((labels == -1) | ((labels >= 1) & (labels <= 10))).all()
    # item pixels are at least 0.5 bright (grey: all channels alike), the dark background is not
    item_pixels = x.permute(0, 2, 3, 1)[mask > 0]
    assert item_pixels.min() > 0.5 - 4 * fashion_scenes.NOISE
    assert x.permute(0, 2, 3, 1)[mask == 0].mean() < 0.3
    _boxes_fit_masks(mask, boxes, labels)


def test_fashion_items_stay_mostly_visible() -> None:
    """Overlap never hides more than 1 - MIN_VISIBLE of an item: each box's class covers at least
    that share of the item's smallest possible area inside the box."""
    items, classes = _items()
    _, y = fashion_scenes.scenes(items, classes, 40, seed=1)
    smallest = 10 * 8
    for m, ls in zip(y.get("mask"), y.get("labels"), strict=True):
        for label in ls[ls >= 0].unique():
            assert (m == label).sum() >= fashion_scenes.MIN_VISIBLE * smallest


def test_half_the_look_alike_pixels_lie_beyond_the_fcns_sight() -> None:
    """An output pixel of `fcn` sees 38 px each way (tests/test_segment.py); about half of the
    sand and road pixels have no water or building that near, so only context can label them."""
    _, y = context_scenes.scenes(200, seed=26)
    mask = y.get("mask")
    cue = ((mask == context_scenes.WATER) | (mask == context_scenes.BUILDINGS)).float()[:, None]
    near_cue = torch.nn.functional.max_pool2d(cue, 2 * 38 + 1, stride=1, padding=38)[:, 0] > 0  # a cue in the window
    look_alike = (mask == context_scenes.SAND) | (mask == context_scenes.ROAD)
    assert 0.45 < (look_alike & ~near_cue).sum() / look_alike.sum() < 0.55  # measured: 0.50
