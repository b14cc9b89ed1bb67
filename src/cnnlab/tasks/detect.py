"""Object detection: boxes with a class and a score, learned by the detector's own loss, scored
by COCO's mean average precision.

Works on any model that holds a detector module, one with two methods (as `yolo` and `ssd`):

    detection_loss(outputs, boxes, labels) -> scalar   the detector's loss (YOLO's grid loss,
                                                        SSD's matched default boxes)
    candidates(outputs) -> boxes (N, A, 4), scores (N, A, K)
                                                        every box it proposes, x1, y1, x2, y2 in
                                                        pixels, and its score for each class

where `outputs` is what the model returns, one tensor. The task finds that module (`bind`),
and owns what is the same for every detector: decoding (a score threshold, then non-maximum
suppression per class with `torchvision.ops.batched_nms`, keeping the best 100 boxes), the
metrics and the pictures. Targets are a `Targets` with `boxes` (N, M, 4) x1, y1, x2, y2 in
pixels and `labels` (N, M) indices into the dataset's classes, -1 on padding rows; class 0 is
the background, never a box's label.

The numbers are COCO's (Lin et al. 2014, "Microsoft COCO: Common Objects in Context"), computed
by torchmetrics' `MeanAveragePrecision` with the pycocotools backend: for each class, the
detections of all images sorted by score make a precision-recall curve, at IoU 0.5 a detection
is right when it overlaps a true box of its class that no higher-scored detection took by
IoU >= 0.5; AP is the area under the curve (precision interpolated at 101 recall points);

    map_50      AP at IoU 0.5, averaged over the classes (Pascal VOC's measure)
    map         AP averaged over IoU 0.5, 0.55, ..., 0.95 and the classes (COCO's main measure)
    per_class   {class: {ap, ap_50, recall}}; recall: the share of its true boxes found at
                IoU 0.5 among the 100 best detections of each image
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from cnnlab.data.targets import Targets
from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write_text, json_text
from cnnlab.tasks.base import Task, register_task

if TYPE_CHECKING:
    from cnnlab.data import Dataset, Split

SCORE_THRESHOLD = 0.05  # a box scored lower is no detection; low, as mAP wants the whole ranking
NMS_IOU = 0.5  # of two boxes of one class overlapping more, the lower-scored one is dropped
MAX_DETECTIONS = 100  # per image: COCO's limit
CANDIDATES = 1_000  # the best-scored boxes per image that go into NMS (its cost grows with their square)
SHOWN_SCORE = 0.5  # boxes drawn in the pictures
PICTURED = 12  # test images in the picture of boxes
LEGIBLE = 288  # px: the side at which a box's label reads well (3 x 96, as in the pictures of `shapes`)


Prediction = dict[str, Tensor]  # boxes (K, 4) x1, y1, x2, y2 in pixels, scores (K,), labels (K,) int64


def true_boxes(y: Targets) -> list[Prediction]:
    """Each image's true boxes and labels, padding rows dropped."""
    return [{"boxes": b[lab >= 0], "labels": lab[lab >= 0]} for b, lab in zip(y.get("boxes"), y.get("labels"), strict=True)]


def select(boxes: Tensor, scores: Tensor, score_threshold: float = SCORE_THRESHOLD, nms_iou: float = NMS_IOU,
           max_detections: int = MAX_DETECTIONS) -> Prediction:
    """One image's detections from candidate boxes (A, 4) and their class scores (A, K):
    every (box, class) scored above the threshold (class 0, the background, never), the best
    CANDIDATES of them, non-maximum suppression within each class, the best `max_detections`."""
    from torchvision.ops import batched_nms

    box, label = torch.nonzero(scores[:, 1:] > score_threshold, as_tuple=True)
    label = label + 1
    score = scores[box, label]
    best = score.topk(min(CANDIDATES, len(score))).indices
    box, label, score = box[best], label[best], score[best]
    keep = batched_nms(boxes[box], score, label, nms_iou)[:max_detections]  # sorted by score
    return {"boxes": boxes[box[keep]], "scores": score[keep], "labels": label[keep]}


def coco_evaluation(predictions: list[Prediction], targets: list[Prediction]) -> dict[str, Any]:
    """torchmetrics' `MeanAveragePrecision` (pycocotools backend) with per-class numbers and the
    precision and recall arrays (`extended_summary`)."""
    from torchmetrics.detection import MeanAveragePrecision

    # each rank scores whole splits alone: no gathering across DDP ranks
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=True, extended_summary=True,
                                  backend="pycocotools", sync_on_compute=False)
    metric.update(predictions, targets)
    return metric.compute()


def summary(result: dict[str, Any], classes: list[str]) -> dict[str, Any]:
    """map, map_50 and per_class {class: {ap, ap_50, recall}} (NaN for a class with no true box)
    from `coco_evaluation`'s result."""
    ids = result["classes"].flatten().tolist()
    per_class = {}
    for k, name in enumerate(classes[1:], start=1):
        if k not in ids:
            per_class[name] = {"ap": math.nan, "ap_50": math.nan, "recall": math.nan}
            continue
        i = ids.index(k)
        curve = result["precision"][0, :, i, 0, -1]  # IoU 0.5, all areas, 100 detections: precision at 101 recalls
        numbers = {
            "ap": result["map_per_class"].flatten()[i].item(),
            "ap_50": curve.mean().item() if (curve >= 0).all() else -1.0,
            "recall": result["recall"][0, i, 0, -1].item(),
        }
        per_class[name] = {key: (v if v >= 0 else math.nan) for key, v in numbers.items()}  # COCO's -1: no true box
    return {"map": result["map"].item(), "map_50": result["map_50"].item(), "per_class": per_class}


@register_task
class Detect(Task):
    name = "detect"
    target = "boxes with a class each"
    score = "map_50"
    train_metrics = ()  # mAP needs NMS and a sort over the whole split: measured at validation only

    def bind(self, model: nn.Module) -> Detect:
        """Find the detector in `model` (the module with `detection_loss` and `candidates`)."""
        for module in model.modules():
            if callable(getattr(module, "detection_loss", None)) and callable(getattr(module, "candidates", None)):
                self.detector = module
                return self
        raise CnnlabError(
            f"{type(model).__name__} holds no detector (a module with detection_loss and candidates methods); "
            "choose a detection model such as yolo or ssd (`cnnlab models`)."
        )

    def loss(self, outputs: Tensor, y: Targets) -> Tensor:
        y = y.to(outputs.device)  # scoring: outputs come back on the CPU, the split may be on a GPU
        return self.detector.detection_loss(outputs, y.get("boxes"), y.get("labels"))

    def train_sums(self, outputs: Tensor, y: Targets) -> Tensor:
        return torch.zeros(0, dtype=torch.float64, device=outputs.device)

    def outputs(self, model: nn.Module, x: Tensor, batch_size: int = 512, tta: bool = False) -> Tensor:
        if tta:
            raise CnnlabError(
                "flip test-time augmentation averages raw outputs, which for a detector would mix the boxes "
                "of an image and of its mirror; score detection runs without --tta."
            )
        return super().outputs(model, x, batch_size)

    def metrics(self, outputs: Tensor, y: Targets) -> dict[str, Any]:
        """loss, map, map_50 and per_class {class: {ap, ap_50, recall}}."""
        got = summary(coco_evaluation(self.decode(outputs), true_boxes(y.to(outputs.device))), self.classes)
        return {"loss": self.loss(outputs, y).item(), **got}

    def decode(self, outputs: Tensor, score_threshold: float = SCORE_THRESHOLD, nms_iou: float = NMS_IOU,
               max_detections: int = MAX_DETECTIONS) -> list[Prediction]:
        """Raw outputs -> each image's detections {boxes (K, 4) x1, y1, x2, y2 in pixels,
        scores (K,), labels (K,)}, best first (see `select`)."""
        boxes, scores = self.detector.candidates(outputs)
        return [select(b, s, score_threshold, nms_iou, max_detections) for b, s in zip(boxes, scores, strict=True)]

    def check_model(self, model: nn.Module, data: Dataset) -> None:
        self.bind(model)
        super().check_model(model, data)

    def check_outputs(self, outputs: Tensor, data: Dataset) -> None:
        boxes, scores = self.detector.candidates(outputs)
        if boxes.shape[-1] != 4 or scores.shape[:-1] != boxes.shape[:-1] or scores.shape[-1] != data.num_classes:
            raise CnnlabError(
                f"your detector proposes boxes {tuple(boxes.shape)} with scores {tuple(scores.shape)} but {data.name} "
                f"needs (N, A, 4) boxes and (N, A, {data.num_classes}) scores, one per class, background included."
            )

    def pictures(self, outputs: Tensor, split: Split, out: Path) -> dict[str, Path]:
        """evaluation.json (the metrics), the first test images with their true and predicted
        boxes (boxes.png), and a precision-recall curve per class (pr-CLASS.png)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        predictions, targets = self.decode(outputs), true_boxes(split.y.to(outputs.device))
        result = coco_evaluation(predictions, targets)
        numbers = {"loss": self.loss(outputs, split.y).item(), **summary(result, self.classes), "classes": self.classes}
        atomic_write_text(out / "evaluation.json", json_text(numbers))
        files = {"evaluation": out / "evaluation.json"}
        files["boxes"] = box_grid(split.x[:PICTURED], targets[:PICTURED], predictions[:PICTURED], self.classes, out / "boxes.png")
        files |= precision_recall_curves(result, self.classes, out)
        return files

    def predictions(self, outputs: Tensor, size: tuple[int, int], images: list[Tensor], names: list[str],
                    out: Path, min_score: float = SHOWN_SCORE) -> list[dict[str, Any]]:
        """Each image's detections scored `min_score` or more, best first, as boxes x1, y1,
        x2, y2 in the image's own pixels with a class and a score, and the image with them
        drawn (NAME-boxes.png, enlarged to about LEGIBLE pixels when smaller, so the labels read).
        A lower `min_score` finds more objects and more false ones (docs/results.md measures both)."""
        from cnnlab.report import save_png

        h, w = size
        found = []
        for detected, image, name in zip(self.decode(outputs, score_threshold=min_score), images, names, strict=True):
            height, width = image.shape[1:]
            boxes = detected["boxes"] * torch.tensor([width / w, height / h, width / w, height / h])
            scale = max(1, LEGIBLE // max(height, width))
            picture = draw_boxes(image, {**detected, "boxes": boxes}, self.classes, scale)
            labels, scores = detected["labels"].tolist(), detected["scores"].tolist()
            found.append({
                "boxes": [{"box": b, "class": self.classes[k], "score": s}
                          for b, k, s in zip(boxes.tolist(), labels, scores, strict=True)],
                "picture": str(save_png(picture, Path(out) / f"{name}-boxes.png")),
            })
        return found


def draw_boxes(image: Tensor, found: Prediction, classes: list[str], scale: int = 3) -> Tensor:
    """image (C, H, W) in [0, 1], enlarged `scale` times so the labels are legible, with the
    boxes drawn (each class in its colour, its score after the name when it has one) -> (3, sH, sW)."""
    from matplotlib import font_manager
    from torchvision.utils import draw_bounding_boxes

    from cnnlab.tasks.segment import COLOURS

    big = torch.nn.functional.interpolate(image[None], scale_factor=scale, mode="nearest")[0]
    rgb = (big.expand(3, -1, -1) * 255).round().to(torch.uint8)
    labels = found["labels"].tolist()
    names = [classes[k] for k in labels]
    if "scores" in found:
        names = [f"{n} {s:.2f}" for n, s in zip(names, found["scores"].tolist(), strict=True)]
    colours = [COLOURS[(k - 1) % len(COLOURS)] for k in labels]
    if labels:  # torchvision warns when asked to draw no box
        font = font_manager.findfont("DejaVu Sans")  # matplotlib's own font: legible names (PIL's default is 6 px)
        rgb = draw_bounding_boxes(rgb, found["boxes"] * scale, names, colors=colours, width=3, font=font, font_size=16)
    return rgb.float() / 255


def box_grid(x: Tensor, targets: list[Prediction], predictions: list[Prediction], classes: list[str], path: Path) -> Path:
    """Each image twice: its true boxes, then the predicted ones scored SHOWN_SCORE or more."""
    from cnnlab.report import image_grid

    panels, titles = [], []
    for image, true, found in zip(x, targets, predictions, strict=True):
        shown = {k: v[found["scores"] >= SHOWN_SCORE] for k, v in found.items()}
        panels += [draw_boxes(image, true, classes), draw_boxes(image, shown, classes)]
        titles += ["true", f"predicted (score >= {SHOWN_SCORE:g})"]
    return image_grid(torch.stack(panels), titles, path, columns=6)


def precision_recall_curves(result: dict[str, Any], classes: list[str], out: Path) -> dict[str, Path]:
    """pr-CLASS.png for each class with true boxes: precision against recall at IoU 0.5 and
    0.75, COCO's interpolated curves (101 recall points, 100 detections per image)."""
    from cnnlab.report import pyplot, save_figure

    plt = pyplot()
    recall = torch.linspace(0, 1, 101)
    files = {}
    for i, k in enumerate(result["classes"].flatten().tolist()):
        curves = {iou: result["precision"][t, :, i, 0, -1] for t, iou in ((0, 0.5), (5, 0.75))}
        if (curves[0.5] < 0).any():  # COCO's -1: the class has no true box here
            continue
        fig, ax = plt.subplots(figsize=(4, 3.4))
        for iou, precision in curves.items():
            ax.plot(recall, precision.clamp_min(0), label=f"IoU {iou:g}: AP {precision.clamp_min(0).mean():.3f}")
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=classes[k])
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left")
        files[f"pr-{classes[k]}"] = save_figure(fig, out / f"pr-{classes[k]}.png")
    return files
