"""Detection: YOLO's grid targets and loss on a hand-worked box, SSD's loss against torchvision's,
decoding with non-maximum suppression, mAP on hand-made predictions, the pictures, and a real
training through `cnnlab.train`."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.data import Dataset, Split, load_data
from cnnlab.data.shapes import scenes
from cnnlab.data.targets import Targets
from cnnlab.errors import CnnlabError
from cnnlab.models import build_model
from cnnlab.models.yolo import LAMBDA_COORD
from cnnlab.tasks import get_task
from cnnlab.tasks.detect import coco_evaluation, select, summary

CLASSES = ["background", "circle", "square", "triangle"]
# One square on a 96x96 image, grid 6x6 (16 px cells): centre (36, 44) lies in row 2, column 2,
# at (0.25, 0.75) of the cell; the box is 24 x 16 px, so √w = √(24/96) = 0.5 and √h = √(1/6).
BOX = [24.0, 36.0, 48.0, 52.0]
CELL = (2, 2)
XYWH = [0.25, 0.75, 0.5, math.sqrt(1 / 6)]


def _targets(boxes: list[list[float]], labels: list[int]) -> Targets:
    """One image's boxes, padded with one row of -1 as a dataset pads them."""
    b = torch.tensor([boxes + [[0.0] * 4]])
    return Targets({"boxes": b, "labels": torch.tensor([labels + [-1]])}, {"boxes": "boxes", "labels": "label"})


def _yolo_outputs(xywh: list[float], confidence_logit: float = 0.0) -> torch.Tensor:
    """Raw YOLO outputs (1, 13, 6, 6) whose first predictor in CELL is the box xywh, sure of
    'square'; every other predictor is sure there is nothing."""
    out = torch.zeros(1, 13, 6, 6)
    out[0, 4] = out[0, 9] = -30.0  # confidences of both predictors, everywhere: sigmoid ~ 1e-13
    logit = torch.logit(torch.tensor(xywh))
    out[0, :4, CELL[0], CELL[1]] = logit
    out[0, 4, CELL[0], CELL[1]] = confidence_logit
    out[0, 10:, CELL[0], CELL[1]] = torch.tensor([-30.0, 30.0, -30.0])  # Pr(square | object) = 1
    return out


@pytest.fixture(scope="module")
def yolo() -> nn.Module:
    torch.manual_seed(0)
    return build_model("yolo", (3, 96, 96), 4)


def test_yolo_encodes_a_box_in_the_cell_of_its_centre(yolo: nn.Module) -> None:
    y = _targets([BOX], [2])
    has_object, xywh, true_box, cls = yolo.net.encode(y.get("boxes"), y.get("labels"), (6, 6))
    assert torch.nonzero(has_object[0]).tolist() == [list(CELL)]
    assert xywh[0, CELL[0], CELL[1]].tolist() == pytest.approx(XYWH)
    assert true_box[0, CELL[0], CELL[1]].tolist() == BOX
    assert cls[0, CELL[0], CELL[1]] == 1  # 'square' among the object classes circle, square, triangle
    assert yolo.net.to_pixels(xywh[:, :, :, None])[0, CELL[0], CELL[1], 0].tolist() == pytest.approx(BOX)


def test_yolo_loss_of_a_hand_worked_box(yolo: nn.Module) -> None:
    y = _targets([BOX], [2])
    task = get_task("detect", CLASSES).bind(yolo)
    # the box exactly: only the confidence term is left, (0.5 - IoU 1)^2
    assert task.loss(_yolo_outputs(XYWH), y).item() == pytest.approx(0.25, abs=1e-5)
    # x off by 0.1 of a cell (1.6 px of a 24 px box): λ_coord 0.1^2, and IoU 22.4 x 16 / 25.6 x 16
    shifted = [XYWH[0] + 0.1, *XYWH[1:]]
    iou = 22.4 / 25.6
    assert task.loss(_yolo_outputs(shifted), y).item() == pytest.approx(LAMBDA_COORD * 0.01 + (0.5 - iou) ** 2, abs=1e-5)


def test_yolo_decodes_its_box_and_drops_the_rest(yolo: nn.Module) -> None:
    task = get_task("detect", CLASSES).bind(yolo)
    (found,) = task.decode(_yolo_outputs(XYWH, confidence_logit=5.0))
    assert found["labels"].tolist() == [2]
    assert found["boxes"].tolist() == [pytest.approx(BOX, abs=1e-4)]
    assert found["scores"].item() == pytest.approx(torch.sigmoid(torch.tensor(5.0)).item())


def test_nms_keeps_the_best_of_overlapping_boxes_of_one_class() -> None:
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [1, 0, 11, 10], [50, 50, 60, 60], [20, 20, 30, 30]])
    scores = torch.tensor([  # background, a, b
        [0.0, 0.9, 0.0],
        [0.0, 0.8, 0.0],  # overlaps the first by IoU 9/11 in the same class: dropped
        [0.0, 0.0, 0.7],  # the same place in another class: kept
        [0.0, 0.6, 0.0],  # alone: kept
        [0.99, 0.01, 0.0],  # background, and below the score threshold: no detection
    ])
    found = select(boxes, scores)
    assert found["scores"].tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert found["labels"].tolist() == [1, 2, 1]
    assert found["boxes"].tolist() == [[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]]
    assert len(select(boxes, scores, max_detections=2)["scores"]) == 2


def _truth() -> list[dict[str, torch.Tensor]]:
    return [
        {"boxes": torch.tensor([[10.0, 10, 40, 40], [50, 50, 80, 70]]), "labels": torch.tensor([1, 2])},
        {"boxes": torch.tensor([[0.0, 0, 20, 30]]), "labels": torch.tensor([1])},
    ]


def test_map_of_perfect_and_of_shifted_predictions() -> None:
    truth = _truth()
    perfect = [{**t, "scores": torch.ones(len(t["labels"]))} for t in truth]
    got = summary(coco_evaluation(perfect, truth), CLASSES)
    assert got["map"] == pytest.approx(1.0) and got["map_50"] == pytest.approx(1.0)
    assert got["per_class"]["circle"] == pytest.approx({"ap": 1.0, "ap_50": 1.0, "recall": 1.0})
    assert all(math.isnan(v) for v in got["per_class"]["triangle"].values())  # no true triangle anywhere
    # every box moved by 60% of its width: IoU 0.4/1.6 = 0.25 < 0.5, nothing is found
    shifted = [{**p, "boxes": p["boxes"] + 0.6 * (p["boxes"][:, 2:3] - p["boxes"][:, 0:1]) * torch.tensor([1.0, 0, 1, 0])}
               for p in perfect]
    got = summary(coco_evaluation(shifted, truth), CLASSES)
    assert got["map"] == 0.0 and got["map_50"] == 0.0 and got["per_class"]["square"]["recall"] == 0.0


def test_a_classifier_holds_no_detector_and_tta_is_refused(yolo: nn.Module) -> None:
    task = get_task("detect", CLASSES)
    with pytest.raises(CnnlabError, match=r"^LeNet5 holds no detector .*choose a detection model") as e:
        task.bind(build_model("lenet5", (1, 28, 28), 10).net)
    assert "\n" not in str(e.value)
    with pytest.raises(CnnlabError, match="score detection runs without --tta"):
        task.bind(yolo).outputs(yolo, torch.rand(1, 3, 96, 96), tta=True)


def test_ssd_loss_is_torchvisions_and_one_step_lowers_it() -> None:
    from torchvision.models.detection.ssd import SSD as TorchvisionSSD

    torch.manual_seed(0)
    model = build_model("ssd", (3, 96, 96), 4)
    net = model.net
    x, y = scenes(16, seed=0)
    boxes, labels = y.get("boxes"), y.get("labels")
    outputs = model(x)
    ours = net.detection_loss(outputs, boxes, labels)

    theirs = TorchvisionSSD(net.backbone, net.anchor_generator, (96, 96), 4, head=net.head)
    truth = [{"boxes": b[lab >= 0], "labels": lab[lab >= 0]} for b, lab in zip(boxes, labels, strict=True)]
    head_outputs = {"bbox_regression": outputs[..., :4], "cls_logits": outputs[..., 4:]}
    matched = net.match(boxes, labels)
    assert ((matched >= 0).sum(1) >= (labels >= 0).sum(1)).all()  # every box has at least its best default box
    losses = theirs.compute_loss(truth, head_outputs, [net.anchors] * len(x), list(matched))
    assert ours.item() == pytest.approx(sum(losses.values()).item(), rel=1e-5)

    # Measured on these scenes (seeds 0-2): Adam at 1e-3 lowers the loss by 14-20% in one step
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    ours.backward()
    optimizer.step()
    assert net.detection_loss(model(x), boxes, labels) < 0.95 * ours


@pytest.fixture(scope="module")
def small_shapes() -> Dataset:
    """shapes cut to 256 training, 64 validation and 128 test scenes."""
    data = load_data("shapes")
    return replace(data, train=Split(data.train.x[:256], data.train.y[:256]),
                   val=Split(data.val.x[:64], data.val.y[:64]), test=Split(data.test.x[:128], data.test.y[:128]))


@pytest.mark.slow
def test_yolo_learns_shapes_through_train(small_shapes: Dataset, tmp_path) -> None:
    # Measured (seed 0, 64 steps of 16 scenes, ~80 s of CPU): test mAP@0.5 0.195; untrained 0.004
    run = cnnlab.train(model="yolo", data=small_shapes, epochs=4, batch_size=16, optimizer="adamw", lr=0.002,
                       out=tmp_path / "yolo", quiet=True)
    test = run.test_result()
    lines = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [line["event"] for line in lines] == ["epoch"] * 4 + ["test"]
    assert "val_map_50" in lines[0] and run.provenance["task"] == "detect"
    assert test["test_map_50"] > 0.1, test
    assert set(test["test_per_class"]) == {"circle", "square", "triangle"}


def test_pictures_show_boxes_and_precision_recall(small_shapes: Dataset, yolo: nn.Module, tmp_path) -> None:
    task = get_task("detect", small_shapes.classes).bind(yolo)
    split = Split(small_shapes.test.x[:8], small_shapes.test.y[:8])
    files = task.pictures(task.outputs(yolo, split.x), split, tmp_path)
    assert set(files) >= {"evaluation", "boxes", "pr-circle", "pr-square", "pr-triangle"}
    assert all(path.stat().st_size > 1000 for name, path in files.items() if name != "evaluation")
    assert json.loads(files["evaluation"].read_text())["classes"] == small_shapes.classes


def test_a_detector_on_digits_is_one_sentence_naming_both(tmp_path) -> None:
    with pytest.raises(CnnlabError, match="yolo.*digits") as e:
        cnnlab.train(model="yolo", data="digits", epochs=1, out=tmp_path / "r", quiet=True)
    assert "detect" in str(e.value) and "\n" not in str(e.value)


def test_a_detector_has_its_own_optimizer_unless_told_otherwise() -> None:
    from cnnlab.config import TrainConfig
    from cnnlab.training.api import model_choices

    # a user who names no optimizer gets ssd's AdamW at 2e-3; one who names SGD gets SGD at its usual rate
    assert model_choices(TrainConfig(model="ssd"), set()).optimizer == "adamw"
    sgd = model_choices(TrainConfig(model="ssd", optimizer="sgd"), {"optimizer"}).resolved()
    assert (sgd.optimizer, sgd.lr) == ("sgd", 0.05)
    assert model_choices(TrainConfig(model="ssd", lr=0.01), {"lr"}).lr == 0.01
    assert model_choices(TrainConfig(model="fcn"), set()) == TrainConfig(model="fcn")


@pytest.mark.slow
def test_ssd_trains_with_its_own_optimizer_and_its_loss_falls(small_shapes: Dataset, tmp_path) -> None:
    # Measured (seed 0, 3 epochs of 4 steps of 16 scenes, ~25 s of CPU): train loss 14.4 -> 7.1 -> 5.7
    data = replace(small_shapes, train=Split(small_shapes.train.x[:64], small_shapes.train.y[:64]),
                   val=Split(small_shapes.val.x[:16], small_shapes.val.y[:16]),
                   test=Split(small_shapes.test.x[:16], small_shapes.test.y[:16]))
    run = cnnlab.train(model="ssd", data=data, epochs=3, batch_size=16, out=tmp_path / "ssd", quiet=True)
    config = (run.path / "config.toml").read_text()
    assert 'optimizer = "adamw"' in config and "lr = 0.002" in config
    losses = [json.loads(line)["train_loss"] for line in (run.path / "metrics.jsonl").read_text().splitlines()[:3]]
    assert all(math.isfinite(v) for v in losses) and losses[2] < 0.7 * losses[0], losses
