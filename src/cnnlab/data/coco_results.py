"""Predictions and targets as COCO JSON, so that pycocotools (or any COCO tool) can score them.

Results (cocodataset.org/#format-results), one entry per detection:

    {"image_id": 42, "category_id": 3, "bbox": [x, y, width, height], "score": 0.91}
    and "segmentation": {"size": [h, w], "counts": "..."} (RLE) for a detection with a mask

A segmenter's class map has no instances: each class present in an image is one entry, its
pixels as RLE and score 1, as in COCO-Stuff's results format (Caesar et al. 2018).

Everything is written in the ORIGINAL image's pixels. A cnnlab dataset stretches every image to
one side, so what a model predicts there is scaled back by `scale`, per image the (x, y) factors
that `original_scale` reads off the split's `orig_size` (all ones for generated data). Box IoU
does not change when both axes are scaled, so box mAP is the same in either frame; masks are
resampled, which moves mask IoU a little.

`coco_ground_truth` writes a split's own targets as a COCO instances file, so COCOeval can score
results on any cnnlab dataset (shapes too), not only on coco: folders; `coco_eval` runs it.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from cnnlab.data.coco import CATEGORY_IDS, resize_binary
from cnnlab.data.dataset import Dataset, Split
from cnnlab.data.targets import Targets
from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write_text

# A detector's predictions, one dict per image as torchvision's detectors return them and
# torchmetrics' MeanAveragePrecision takes them: boxes (M, 4) x1 y1 x2 y2 in the dataset's
# pixels, scores (M,), labels (M,) class indices (1..K), optionally masks (M, H, W) bool or
# probabilities.
Detections = list[dict[str, Tensor]]

# COCOeval's summary, in the order of COCOeval.stats, under the names cnnlab reports.
SUMMARY = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large",
           "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large")


def category_ids(data: Dataset) -> list[int]:
    """The COCO category id of each class index (entry 0, background, is never written): a coco:
    folder's own ids, else the class index itself."""
    if CATEGORY_IDS in data.meta:
        return [0, *map(int, data.meta[CATEGORY_IDS].split())]
    return list(range(data.num_classes))


def coco_image_ids(split: Split) -> Tensor:
    """(N,) int64 COCO id of each image: the source JSON's for coco: data, else 1..N."""
    if isinstance(split.y, Targets) and "image_id" in split.y:
        return split.y.get("image_id")
    return torch.arange(1, len(split) + 1)


def original_scale(split: Split) -> Tensor:
    """(N, 2) float64 factors (x, y) from the split's pixels to each image file's: width / W and
    height / H from its `orig_size`; ones for data that was made at its size."""
    n, _, h, w = split.x.shape
    if isinstance(split.y, Targets) and "orig_size" in split.y:
        size = split.y.get("orig_size").double()  # (N, 2) height, width
        return torch.stack([size[:, 1] / w, size[:, 0] / h], 1)
    return torch.ones(n, 2, dtype=torch.float64)


def coco_results(
    predictions: Detections | Tensor,
    image_ids: Sequence[int] | Tensor,
    classes_to_category_ids: Sequence[int],
    scale: Tensor | None = None,
) -> list[dict]:
    """Predictions on N images as COCO results: `predictions` is a detector's `Detections` or a
    segmenter's class map (N, H, W) int64; `image_ids` (N,) the COCO id of each image;
    `classes_to_category_ids[k]` the COCO category of class k; `scale` (N, 2) the (x, y) factors
    to each original image's pixels (default: none). Rows of class 0 or below (background,
    padding) and mask values past the classes (IGNORE) are not predictions and are left out."""
    ids = [int(i) for i in image_ids]
    factors = torch.ones(len(ids), 2, dtype=torch.float64) if scale is None else scale.double()
    if not len(predictions) == len(ids) == len(factors):
        raise ValueError(f"predictions, image_ids and scale differ in length: {len(predictions)}, {len(ids)}, {len(factors)}")
    if isinstance(predictions, Tensor):
        return [entry for cmap, image_id, (sx, sy) in zip(predictions, ids, factors.tolist(), strict=True)
                for entry in _class_map_results(cmap, image_id, classes_to_category_ids, sx, sy)]
    return [entry for pred, image_id, (sx, sy) in zip(predictions, ids, factors.tolist(), strict=True)
            for entry in _detection_results(pred, image_id, classes_to_category_ids, sx, sy)]


def _detection_results(pred: dict[str, Tensor], image_id: int, category: Sequence[int], sx: float, sy: float) -> list[dict]:
    boxes = pred["boxes"].detach().cpu().double() * torch.tensor([sx, sy, sx, sy], dtype=torch.float64)
    masks = pred.get("masks")
    out = []
    for k, (label, score) in enumerate(zip(pred["labels"].tolist(), pred["scores"].tolist(), strict=True)):
        if label <= 0:
            continue
        x1, y1, x2, y2 = boxes[k].tolist()
        entry = {"image_id": image_id, "category_id": category[label], "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}
        if masks is not None:
            m = masks[k].detach().cpu()
            m = m if m.dtype == torch.bool else m >= 0.5
            entry["segmentation"] = encode_rle(resize_binary(m, (round(m.shape[0] * sy), round(m.shape[1] * sx))))
        out.append(entry)
    return out


def _class_map_results(cmap: Tensor, image_id: int, category: Sequence[int], sx: float, sy: float) -> list[dict]:
    h, w = cmap.shape
    size = (round(h * sy), round(w * sx))
    out = []
    for label in torch.unique(cmap).tolist():
        if 0 < label < len(category):
            rle = encode_rle(resize_binary(cmap == label, size))
            out.append({"image_id": image_id, "category_id": category[label], "segmentation": rle, "score": 1.0})
    return out


def encode_rle(mask: Tensor) -> dict:
    """A bool mask (h, w) as COCO's compressed RLE, its counts as text so that it goes into JSON."""
    import numpy as np
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.numpy().astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def write_coco_results(
    path: str | Path,
    predictions: Detections | Tensor,
    image_ids: Sequence[int] | Tensor,
    classes_to_category_ids: Sequence[int],
    scale: Tensor | None = None,
) -> int:
    """Write `coco_results(...)` to `path` as JSON, atomically; returns how many entries.
    (pycocotools' `COCO.loadRes` refuses a file of none: there is nothing to score.)"""
    results = coco_results(predictions, image_ids, classes_to_category_ids, scale)
    atomic_write_text(Path(path), json.dumps(results))
    return len(results)


def coco_ground_truth(
    split: Split, classes: list[str], classes_to_category_ids: Sequence[int] | None = None, task: str = "detect"
) -> dict:
    """A split's targets as a COCO instances file (a dict), in each original image's pixels:
    for task "detect" one annotation per box, for "segment" one per class present in an image's
    mask (IGNORE pixels in none), as the results above. Image ids are `coco_image_ids(split)`;
    category ids default to the class indices. Annotation ids count from 1: COCOeval stores a
    match as the matched annotation's id, so an id of 0 would read as no match."""
    from pycocotools import mask as mask_utils

    needs = "mask" if task == "segment" else "boxes"
    if not isinstance(split.y, Targets) or needs not in split.y:
        raise CnnlabError(f"this split has no {needs} targets to write as COCO {task} ground truth; it holds another task's.")
    cat_ids = list(classes_to_category_ids) if classes_to_category_ids is not None else list(range(len(classes)))
    ids, scale = coco_image_ids(split), original_scale(split)
    _, _, h, w = split.x.shape
    if task == "segment":
        annotations = coco_results(split.y.get("mask"), ids, cat_ids, scale)
    else:
        boxes, labels = split.y.get("boxes"), split.y.get("labels")
        truth = [{"boxes": b, "labels": lab, "scores": torch.ones(len(lab))} for b, lab in zip(boxes, labels, strict=True)]
        annotations = coco_results(truth, ids, cat_ids, scale)  # padding rows (label -1) are left out there
    for k, a in enumerate(annotations, start=1):
        del a["score"]
        if "segmentation" in a:
            rle = {"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode()}
            a["area"], a["bbox"] = float(mask_utils.area(rle)), mask_utils.toBbox(rle).tolist()
        else:
            a["area"] = a["bbox"][2] * a["bbox"][3]
        a.update(id=k, iscrowd=0)
    return {
        "info": {"description": "ground truth written by cnnlab.data.coco_results"},
        "images": [
            {"id": i, "height": round(h * sy), "width": round(w * sx)}
            for i, (sx, sy) in zip(ids.tolist(), scale.tolist(), strict=True)
        ],
        "annotations": annotations,
        "categories": [{"id": cat_ids[k], "name": classes[k]} for k in range(1, len(classes))],
    }


def write_coco_ground_truth(path: str | Path, split: Split, classes: list[str],
                            classes_to_category_ids: Sequence[int] | None = None, task: str = "detect") -> None:
    """Write `coco_ground_truth(...)` to `path` as JSON, atomically."""
    atomic_write_text(Path(path), json.dumps(coco_ground_truth(split, classes, classes_to_category_ids, task)))


def coco_eval(ground_truth: dict, results: list[dict], iou_type: str = "bbox") -> dict[str, float]:
    """pycocotools' COCOeval of `results` against `ground_truth` (dicts as above), quietly:
    {"map": AP@[.5:.95], "map_50": AP@.5, ...} (SUMMARY; -1 where COCOeval has nothing to
    measure, e.g. no large objects). iou_type: "bbox" or "segm"."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not results:
        raise CnnlabError("there are no predictions to score; COCOeval needs at least one.")
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and table
        gt = COCO()
        gt.dataset = json.loads(json.dumps(ground_truth))  # its own copy: COCO adds keys to what it is given
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(json.loads(json.dumps(results))), iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return dict(zip(SUMMARY, map(float, evaluation.stats), strict=True))
