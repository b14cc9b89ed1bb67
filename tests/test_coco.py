"""coco:DIR on folders written here in the real format (PNG and JPEG files, polygons, compressed
and uncompressed RLE, category ids that are neither contiguous nor listed in order), and the
way back: results and ground truth as COCO JSON, scored by pycocotools and by torchmetrics."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from cnnlab.data import Split, load_data
from cnnlab.data.coco import decode_segmentation, rle_runs
from cnnlab.data.coco_results import (
    category_ids,
    coco_eval,
    coco_ground_truth,
    coco_image_ids,
    coco_results,
    original_scale,
    write_coco_ground_truth,
    write_coco_results,
)
from cnnlab.data.targets import IGNORE
from cnnlab.errors import CnnlabError

SIDE = 32  # the tests' image_size: small and fast, still 2-3x smaller than the files
CATEGORIES = [{"id": 7, "name": "square"}, {"id": 3, "name": "circle"}, {"id": 12, "name": "triangle"}]  # not in id order
CLASSES = ["background", "circle", "square", "triangle"]  # by ascending id: 3, 7, 12
COLOUR = {3: 0, 7: 1, 12: 2}  # each category drawn in pure red, green or blue on black


# -- a coco: folder ------------------------------------------------------------------------------

def _object(draw: ImageDraw.ImageDraw, cid: int, x: int, y: int, r: int, encoding: str) -> tuple[np.ndarray, object]:
    """Draw one object on the image and return its pixel mask and its COCO segmentation."""
    alone = Image.new("L", draw.im.size)
    colour = tuple(255 if c == COLOUR[cid] else 0 for c in range(3))
    for d, fill in ((draw, colour), (ImageDraw.Draw(alone), 255)):
        if cid == 7:
            d.rectangle([x - r, y - r, x + r, y + r], fill=fill)
        elif cid == 12:
            d.polygon([(x, y - r), (x + r, y + r), (x - r, y + r)], fill=fill)
        else:
            d.ellipse([x - r, y - r, x + r, y + r], fill=fill)
    mask = np.asarray(alone) > 0
    if cid == 7:  # pixel edges: the filled pixels x - r .. x + r span x - r to x + r + 1
        return mask, [[x - r, y - r, x + r + 1, y - r, x + r + 1, y + r + 1, x - r, y + r + 1]]
    if cid == 12:
        return mask, [[x + 0.5, y - r, x + r + 1, y + r + 1, x - r, y + r + 1]]
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    if encoding == "compressed":
        return mask, {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode()}
    runs = rle_runs(rle["counts"].decode())
    return mask, {"size": [int(s) for s in rle["size"]], "counts": runs}  # uncompressed, as COCO's crowd regions


def _scene(i: int, image_id: int, ann_id: int, folder: Path) -> tuple[dict, list[dict], dict[int, np.ndarray]]:
    """Image i: 1-3 objects in separate thirds of a non-square canvas (image 0: a small square
    over a large triangle, annotated square first)."""
    rng = np.random.default_rng(i)
    w, h = [(72, 48), (64, 40), (80, 56)][i % 3]
    im = Image.new("RGB", (w, h))
    draw = ImageDraw.Draw(im)
    if i == 0:
        placed = [(12, w // 2, h // 2, h // 2 - 3), (7, w // 2, h // 2 + 4, 4)]  # triangle first in pixels
    else:
        n = 1 + i % 3
        placed = [(int(rng.choice([3, 7, 12])), int(w * (2 * j + 1) / 6), int(rng.integers(10, h - 10)), int(rng.integers(4, 8)))
                  for j in range(n)]
    annotations, masks = [], {}
    for cid, x, y, r in placed:
        mask, segmentation = _object(draw, cid, x, y, r, "compressed" if i % 2 else "uncompressed")
        ys, xs = np.nonzero(mask)
        box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
        annotations.append({"id": ann_id + len(annotations), "image_id": image_id, "category_id": cid, "bbox": box,
                            "area": int(mask.sum()), "iscrowd": 0, "segmentation": segmentation})
        masks[annotations[-1]["id"]] = mask
    if i == 0:
        annotations.reverse()  # the small square first in the file: the larger-under-smaller rule, not file order, decides
    name = f"scene{i:03d}." + ("jpg" if i % 4 == 3 else "png")
    im.save(folder / "images" / name, quality=95)
    return {"id": image_id, "file_name": name, "width": w, "height": h}, annotations, masks


def write_coco_folder(root: Path, counts: dict[str, int] | None = None) -> dict[str, dict]:
    """A coco: folder with `counts` images per part ({"train": 24} by default); image ids are
    100 + 3 i, so ids are not positions. Returns the JSON written, per part."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    docs, i, ann_id = {}, 0, 1
    for part, n in (counts or {"train": 24}).items():
        doc = {"images": [], "annotations": [], "categories": CATEGORIES}
        for _ in range(n):
            image, annotations, _ = _scene(i, 100 + 3 * i, ann_id, root)
            doc["images"].append(image)
            doc["annotations"] += annotations
            i, ann_id = i + 1, ann_id + len(annotations)
        (root / f"{part}.json").write_text(json.dumps(doc))
        docs[part] = doc
    return docs


def edit(root: Path, part: str, change: Callable[[dict], None]) -> None:
    doc = json.loads((root / f"{part}.json").read_text())
    change(doc)
    (root / f"{part}.json").write_text(json.dumps(doc))


def load(root: Path, **options: object):
    return load_data(f"coco:{root}", image_size=SIDE, **options)


def all_ids(ds) -> set[int]:
    return {i for split in ds.splits().values() for i in split.y.get("image_id").tolist()}


def one_sentence(e: pytest.ExceptionInfo[CnnlabError]) -> str:
    message = str(e.value)
    assert "\n" not in message and message.endswith("."), message
    return message


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    root = tmp_path_factory.mktemp("coco")
    return root, write_coco_folder(root)


@pytest.fixture(scope="module")
def data(folder):
    return load(folder[0])


# -- what a loaded folder holds ------------------------------------------------------------------

def test_classes_tasks_and_target_shapes(data, folder) -> None:
    assert data.classes == CLASSES and category_ids(data) == [0, 3, 7, 12]
    assert (data.task, data.other_tasks) == ("detect", ("segment",)) and data.input_shape == (3, SIDE, SIDE)
    y = data.train.y
    n, m = len(data.train), y.get("boxes").shape[1]
    assert m == 3  # the most objects in any image
    assert y.get("boxes").shape == (n, m, 4) and y.get("boxes").dtype == torch.float32
    assert y.get("labels").shape == (n, m) and set(y.get("labels").unique().tolist()) <= {-1, 1, 2, 3}
    assert y.get("mask").shape == (n, SIDE, SIDE) and y.get("mask").dtype == torch.int64
    assert y.kinds == {"boxes": "boxes", "labels": "label", "mask": "mask", "image_id": "label", "orig_size": "label"}
    assert all_ids(data) == {im["id"] for im in folder[1]["train"]["images"]}


def test_boxes_and_masks_land_where_the_pixels_are(data, folder) -> None:
    images = {im["id"]: im for im in folder[1]["train"]["images"]}
    by_image: dict[int, list[dict]] = {}
    for a in folder[1]["train"]["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    checked = 0
    for split in data.splits().values():
        fields = (split.y.get(k) for k in ("boxes", "labels", "mask", "image_id", "orig_size"))
        for x, boxes, labels, mask, image_id, size in zip(split.x, *fields, strict=True):
            im = images[int(image_id)]
            assert size.tolist() == [im["height"], im["width"]]
            sx, sy = SIDE / im["width"], SIDE / im["height"]
            want = []
            for a in by_image[int(image_id)]:
                x0, y0, bw, bh = a["bbox"]
                name = next(c["name"] for c in CATEGORIES if c["id"] == a["category_id"])
                want.append((CLASSES.index(name), [x0 * sx, y0 * sy, (x0 + bw) * sx, (y0 + bh) * sy]))
            kept = labels >= 0
            assert labels[kept].tolist() == [k for k, _ in want]
            assert torch.allclose(boxes[kept], torch.tensor([b for _, b in want]), atol=1e-5, rtol=0), (boxes[kept], want)
            assert (boxes[~kept] == 0).all()
            if not im["file_name"].endswith(".png"):
                continue
            for cls, cid in ((1, 3), (2, 7), (3, 12)):  # where the colour of a class is, the mask says that class
                coloured = x[COLOUR[cid]] >= 0.5
                if coloured.any() or (mask == cls).any():
                    iou = ((mask == cls) & coloured).sum() / ((mask == cls) | coloured).sum()
                    assert iou > 0.8, (im["file_name"], CLASSES[cls], float(iou))
            assert ((mask == 0) == (x.max(0).values < 0.5)).float().mean() > 0.95
            checked += 1
    assert checked >= 15


def test_smaller_objects_are_painted_over_larger_ones(data, folder) -> None:
    first = folder[1]["train"]["images"][0]
    split = next(s for s in data.splits().values() if first["id"] in s.y.get("image_id").tolist())
    i = split.y.get("image_id").tolist().index(first["id"])
    mask = split.y.get("mask")[i]
    # the square (class 2) at the canvas centre, 4 px below it, written first in the file, lies
    # over the large triangle (class 3) annotated after it
    cx, cy = round(SIDE * (first["width"] // 2) / first["width"]), round(SIDE * (first["height"] // 2 + 4) / first["height"])
    assert mask[cy, cx] == 2
    assert (mask == 3).sum() > 3 * (mask == 2).sum() > 0


def test_polygons_and_both_rles_decode_to_the_drawn_pixels(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    for i in (1, 2, 3):  # compressed RLE, uncompressed RLE, polygons among them
        _, annotations, masks = _scene(i, i, 1, tmp_path)
        h, w = next(iter(masks.values())).shape
        for a in annotations:
            got = decode_segmentation(a["segmentation"], h, w)
            drawn = masks[a["id"]]
            if isinstance(a["segmentation"], dict):
                assert (got == drawn).all()
            else:  # PIL and pycocotools rasterise a polygon's edge pixels differently
                assert (got & drawn).sum() / (got | drawn).sum() > 0.75


def test_a_short_rle_is_refused_not_read_from_stray_memory() -> None:
    with pytest.raises(CnnlabError, match="cover 0 pixels, not the image's 100"):
        decode_segmentation({"size": [10, 10], "counts": "0"}, 10, 10)
    with pytest.raises(CnnlabError, match="size"):
        decode_segmentation({"size": [10, 12], "counts": "0"}, 10, 10)


def test_crowd_regions_and_boxes_without_masks_are_ignored(tmp_path: Path) -> None:
    docs = write_coco_folder(tmp_path, {"train": 6})
    target = docs["train"]["images"][2]  # 80x56, objects near the middle of each third
    crowd = np.zeros((target["height"], target["width"]), dtype=np.uint8)
    crowd[:6, :20] = 1  # a strip along the top left, where nothing is drawn
    rle = mask_utils.encode(np.asfortranarray(crowd))

    def add(doc: dict) -> None:
        doc["annotations"] += [
            {"id": 900, "image_id": target["id"], "category_id": 3, "bbox": [0, 0, 20, 6], "iscrowd": 1,
             "segmentation": {"size": [target["height"], target["width"]], "counts": rle["counts"].decode()}},
            {"id": 901, "image_id": target["id"], "category_id": 7, "bbox": [60, 46, 20, 10], "iscrowd": 0},
        ]

    edit(tmp_path, "train", add)
    ds = load(tmp_path, val_fraction=0.0)
    split = next(s for s in ds.splits().values() if target["id"] in s.y.get("image_id").tolist())
    i = split.y.get("image_id").tolist().index(target["id"])
    mask, labels = split.y.get("mask")[i], split.y.get("labels")[i]
    sx, sy = SIDE / 80, SIDE / 56
    assert (mask[: int(6 * sy), : int(20 * sx)] == IGNORE).all()  # the crowd
    assert (mask[round(46 * sy) + 1 :, round(60 * sx) + 1 :] == IGNORE).all()  # the box without a mask
    drawn = [a for a in docs["train"]["annotations"] if a["image_id"] == target["id"]]
    assert (labels >= 0).sum() == len(drawn) + 1  # the box without a mask counts, the crowd gives none


# -- splits ---------------------------------------------------------------------------------------

def test_split_off_train_is_seeded_stable_and_disjoint(tmp_path: Path, data) -> None:
    parts = {p: set(s.y.get("image_id").tolist()) for p, s in data.splits().items()}
    assert [len(parts[p]) for p in ("train", "val", "test")] == [17, 2, 5]  # 24 images: test 20%, val 10%
    assert set.union(*parts.values()) == all_ids(data) and sum(map(len, parts.values())) == 24
    assert "test split off train.json (0.2, seed 0)" in data.meta["layout"]

    write_coco_folder(tmp_path)
    again = load(tmp_path)  # the same files elsewhere: the same split
    assert {p: set(s.y.get("image_id").tolist()) for p, s in again.splits().items()} == parts

    first_test = min(parts["test"])
    edit(tmp_path, "train", lambda doc: doc.update(images=[im for im in doc["images"] if im["id"] != first_test],
                                                   annotations=[a for a in doc["annotations"] if a["image_id"] != first_test]))
    fewer = {p: set(s.y.get("image_id").tolist()) for p, s in load(tmp_path).splits().items()}
    moved = sum(len(fewer[p] - parts[p]) for p in fewer)
    assert moved <= 2  # one image less moves at most the images at the boundaries, not the split


def test_val_and_test_files_are_the_splits_when_present(tmp_path: Path) -> None:
    docs = write_coco_folder(tmp_path, {"train": 10, "val": 3, "test": 4})
    ds = load(tmp_path)
    for part in ("train", "val", "test"):
        assert getattr(ds, part).y.get("image_id").tolist() == [im["id"] for im in docs[part]["images"]]
    assert ds.meta["layout"] == "train.json, val.json, test.json"


# -- broken input ---------------------------------------------------------------------------------

def _missing_file(root: Path, im: dict) -> None:
    (root / "images" / im["file_name"]).unlink()


def _not_an_image(root: Path, im: dict) -> None:
    (root / "images" / im["file_name"]).write_bytes(b"these bytes are no picture")


def _box_outside(root: Path, im: dict) -> None:
    def move(doc: dict) -> None:
        a = next(a for a in doc["annotations"] if a["image_id"] == im["id"])
        a["bbox"] = [im["width"] - 5, 2, 12, 8]

    edit(root, "train", move)


def _unknown_category(root: Path, im: dict) -> None:
    edit(root, "train", lambda doc: next(a for a in doc["annotations"] if a["image_id"] == im["id"]).update(category_id=99))


def _short_rle(root: Path, im: dict) -> None:
    def cut(doc: dict) -> None:
        a = next(a for a in doc["annotations"] if a["image_id"] == im["id"])
        a["segmentation"] = {"size": [im["height"], im["width"]], "counts": "0"}

    edit(root, "train", cut)


BROKEN_IMAGES = {
    "missing image file": (_missing_file, "is missing"),
    "undecodable image": (_not_an_image, "not an image format Pillow can decode"),
    "box outside the image": (_box_outside, "outside the"),
    "unknown category id": (_unknown_category, "category id 99"),
    "RLE that stops short": (_short_rle, "RLE runs cover"),
}


@pytest.mark.parametrize("case", BROKEN_IMAGES)
def test_a_broken_image_is_skipped_by_name_or_refused(tmp_path: Path, case: str) -> None:
    docs = write_coco_folder(tmp_path, {"train": 8})
    im = docs["train"]["images"][4]
    breaks, reason = BROKEN_IMAGES[case]
    breaks(tmp_path, im)
    with pytest.warns(UserWarning, match=f"coco: image {im['id']} \\({im['file_name']}\\) of train.json: .*{reason}"):
        ds = load(tmp_path, on_corrupt="skip")
    assert all_ids(ds) == {i["id"] for i in docs["train"]["images"]} - {im["id"]}  # that image alone is gone
    assert im["file_name"] in ds.meta["skipped"]
    with pytest.raises(CnnlabError, match=reason) as e:
        load(tmp_path, on_corrupt="error")
    assert im["file_name"] in one_sentence(e) and "--on-corrupt skip" in str(e.value)


BROKEN_FILES = {
    "bad JSON": ('{"images": [', "is not valid JSON"),
    "empty file": ("", "is empty"),
    "no images": (json.dumps({"images": [], "annotations": [], "categories": CATEGORIES}), "lists no images"),
}


@pytest.mark.parametrize("case", BROKEN_FILES)
def test_a_broken_val_file_is_skipped_by_name_or_refused(tmp_path: Path, case: str) -> None:
    write_coco_folder(tmp_path, {"train": 10, "test": 3})
    text, reason = BROKEN_FILES[case]
    (tmp_path / "val.json").write_text(text)
    with pytest.warns(UserWarning, match=f"coco: val.json {reason}.*; skipped"):
        ds = load(tmp_path, on_corrupt="skip", val_fraction=0.2)
    assert len(ds.val) == 2 and len(ds.train) == 8  # val split off train.json instead
    assert "val split off train.json" in ds.meta["layout"]
    with pytest.raises(CnnlabError, match=f"val.json {reason}") as e:
        load(tmp_path, on_corrupt="error")
    one_sentence(e)


@pytest.mark.parametrize("case", BROKEN_FILES)
@pytest.mark.parametrize("on_corrupt", ["skip", "error"])
def test_a_broken_train_file_always_stops(tmp_path: Path, case: str, on_corrupt: str) -> None:
    write_coco_folder(tmp_path, {"train": 2})
    text, reason = BROKEN_FILES[case]
    (tmp_path / "train.json").write_text(text)
    with pytest.raises(CnnlabError, match=f"train.json {reason}") as e:
        load(tmp_path, on_corrupt=on_corrupt)
    one_sentence(e)


@pytest.mark.parametrize("on_corrupt", ["skip", "error"])
def test_a_missing_folder_or_train_file_always_stops(tmp_path: Path, on_corrupt: str) -> None:
    with pytest.raises(CnnlabError, match="does not exist") as e:
        load(tmp_path / "nowhere", on_corrupt=on_corrupt)
    one_sentence(e)
    (tmp_path / "images").mkdir()
    with pytest.raises(CnnlabError, match="has no train.json") as e:
        load(tmp_path, on_corrupt=on_corrupt)
    one_sentence(e)
    with pytest.raises(CnnlabError, match="coco:PATH"):
        load_data("coco")


def test_every_image_broken_leaves_nothing_to_train_on(tmp_path: Path) -> None:
    docs = write_coco_folder(tmp_path, {"train": 2})
    for im in docs["train"]["images"]:
        _missing_file(tmp_path, im)
    with warnings.catch_warnings(), pytest.raises(CnnlabError, match="no image of train.json") as e:
        warnings.simplefilter("ignore")
        load(tmp_path)
    one_sentence(e)


# -- the way back: COCO results and ground truth ---------------------------------------------------

def _truth_as_predictions(split: Split) -> list[dict[str, torch.Tensor]]:
    y = split.y
    return [{"boxes": b[lab >= 0], "labels": lab[lab >= 0], "scores": torch.ones(int((lab >= 0).sum()))}
            for b, lab in zip(y.get("boxes"), y.get("labels"), strict=True)]


def test_results_are_in_the_original_pixels_with_the_source_ids(data, folder, tmp_path: Path) -> None:
    split = data.train
    path = tmp_path / "results.json"
    n = write_coco_results(path, _truth_as_predictions(split), coco_image_ids(split), category_ids(data), original_scale(split))
    results = json.loads(path.read_text())
    assert n == len(results) == int((split.y.get("labels") >= 0).sum())
    source = sorted((a["image_id"], a["category_id"], a["bbox"]) for a in folder[1]["train"]["annotations"]
                    if a["image_id"] in coco_image_ids(split).tolist())
    got = sorted((r["image_id"], r["category_id"], r["bbox"]) for r in results)
    assert all(set(r) == {"image_id", "category_id", "bbox", "score"} for r in results)
    assert [s[:2] for s in source] == [g[:2] for g in got]
    np.testing.assert_allclose([s[2] for s in source], [g[2] for g in got], atol=1e-3)


def test_ground_truth_as_results_scores_map_one(data, tmp_path: Path) -> None:
    for split in (data.train, data.test):
        truth = coco_ground_truth(split, data.classes, category_ids(data))
        assert {c["id"] for c in truth["categories"]} == {3, 7, 12}
        results = coco_results(_truth_as_predictions(split), coco_image_ids(split), category_ids(data), original_scale(split))
        got = coco_eval(truth, results)
        assert got["map"] == pytest.approx(1.0) and got["map_50"] == pytest.approx(1.0)
    masks = coco_results(data.train.y.get("mask"), coco_image_ids(data.train), category_ids(data), original_scale(data.train))
    assert "counts" in masks[0]["segmentation"] and isinstance(masks[0]["segmentation"]["counts"], str)
    segment_truth = coco_ground_truth(data.train, data.classes, category_ids(data), task="segment")
    assert coco_eval(segment_truth, masks, "segm")["map"] == pytest.approx(1.0)
    write_coco_ground_truth(tmp_path / "truth.json", data.train, data.classes, category_ids(data))
    written = json.loads((tmp_path / "truth.json").read_text())
    assert written == json.loads(json.dumps(coco_ground_truth(data.train, data.classes, category_ids(data))))


def test_generated_scenes_round_trip_too() -> None:
    from cnnlab.data.shapes import CLASSES as SHAPES
    from cnnlab.data.shapes import scenes

    split = Split(*scenes(12, seed=0, side=48))
    for task, iou_type in (("detect", "bbox"), ("segment", "segm")):
        truth = coco_ground_truth(split, SHAPES, task=task)
        assert [im["id"] for im in truth["images"]] == list(range(1, 13)) and truth["images"][0]["width"] == 48
        predictions = _truth_as_predictions(split) if task == "detect" else split.y.get("mask")
        results = coco_results(predictions, coco_image_ids(split), list(range(len(SHAPES))))
        assert coco_eval(truth, results, iou_type)["map"] == pytest.approx(1.0)


def test_a_detection_mask_is_written_as_rle_at_the_original_size() -> None:
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[0, 8:16, 4:20] = True
    pred = [{"boxes": torch.tensor([[4.0, 8.0, 20.0, 16.0]]), "labels": torch.tensor([1]), "scores": torch.tensor([0.7]),
             "masks": mask}]
    (r,) = coco_results(pred, [5], [0, 9], torch.tensor([[2.0, 1.5]]))
    assert r["bbox"] == [8.0, 12.0, 32.0, 12.0] and r["category_id"] == 9 and r["score"] == pytest.approx(0.7)
    decoded = decode_segmentation(r["segmentation"], 48, 64)
    assert decoded.shape == (48, 64)
    ys, xs = np.nonzero(decoded)
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (8, 40, 12, 24)


def test_torchmetrics_map_agrees_with_cocoeval_on_the_results_file(data, tmp_path: Path) -> None:
    """Predictions with shifted, missing and false boxes: torchmetrics on the dataset's pixels,
    COCOeval on the results file in the original pixels."""
    from torchmetrics.detection import MeanAveragePrecision

    split = data.train
    g = torch.Generator().manual_seed(0)
    predictions, targets = [], []
    for b, lab in zip(split.y.get("boxes"), split.y.get("labels"), strict=True):
        b, lab = b[lab >= 0], lab[lab >= 0]
        targets.append({"boxes": b, "labels": lab})
        keep = torch.rand(len(b), generator=g) > 0.2  # a fifth of the objects missed
        size = (b[keep, 2:] - b[keep, :2]).repeat(1, 2)
        shifted = b[keep] + torch.randn(int(keep.sum()), 4, generator=g) * 0.1 * size  # IoUs spread over the thresholds
        false = torch.rand(2, 2, generator=g) * 24
        false = torch.cat([false, false + 2 + torch.rand(2, 2, generator=g) * 6], 1)  # two boxes where nothing is
        predictions.append({
            "boxes": torch.cat([shifted, false]),
            "labels": torch.cat([lab[keep], torch.randint(1, 4, (2,), generator=g)]),
            "scores": torch.rand(int(keep.sum()) + 2, generator=g),
        })
    path = tmp_path / "results.json"
    write_coco_results(path, predictions, coco_image_ids(split), category_ids(data), original_scale(split))
    ours = coco_eval(coco_ground_truth(split, data.classes, category_ids(data)), json.loads(path.read_text()))
    assert 0.2 < ours["map"] < 0.9  # a case with something to get wrong

    def theirs(**thresholds: list[float]) -> dict[str, float]:
        metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", **thresholds)
        metric.update(predictions, targets)
        return {k: float(v) for k, v in metric.compute().items() if k in ("map", "map_50")}

    default = theirs()
    assert abs(ours["map"] - default["map"]) < 0.005 and abs(ours["map_50"] - default["map_50"]) < 0.005
    # What is left (0.001 here) is torchmetrics' thresholds made in float32: a recall of 3/10 falls
    # on the other side of 0.3. Given COCOeval's float64 thresholds, the two agree to rounding.
    exact = theirs(rec_thresholds=np.linspace(0, 1, 101).tolist(), iou_thresholds=np.linspace(0.5, 0.95, 10).tolist())
    assert exact["map"] == pytest.approx(ours["map"], abs=1e-6) and exact["map_50"] == pytest.approx(ours["map_50"], abs=1e-6)
