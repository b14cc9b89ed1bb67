"""`cnnlab evaluate`, `predict`, `report`, `card` and `compare` on segmentation and detection runs.

The runs train for one epoch on `shapes` cut to 96 training and 24 test scenes of 32 px (a few
seconds each): too short to learn much, which is not what these tests check. The numbers that
must be right (mAP against COCOeval, boxes and masks in a file's own pixels) are checked on
predictions made by hand, where the answer is known.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

import cnnlab
from cnnlab.data import Split, load_data
from cnnlab.data import shapes as shapes_module
from cnnlab.data.coco_results import coco_eval
from cnnlab.models import build_model
from cnnlab.publish import evaluate_run, write_card, write_report
from cnnlab.publish.evaluation import write_coco_predictions
from cnnlab.run import Run
from cnnlab.tasks import get_task
from cnnlab.training import TrainConfig

PNG = b"\x89PNG\r\n\x1a\n"
SIDE = 32


@pytest.fixture(scope="module", autouse=True)
def small_shapes() -> Iterator[None]:
    """`shapes` with 96 training and 24 test scenes, for every load in this process (the runs
    reload their data by name to evaluate, and find the same bytes)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shapes_module, "TRAIN_VAL", 96)
        mp.setattr(shapes_module, "TEST", 24)
        yield


def _train(model: str, out: Path, **options: object) -> Run:
    return cnnlab.train(model=model, data="shapes", image_size=SIDE, epochs=1, batch_size=32, out=out, quiet=True,
                        **options)


@pytest.fixture(scope="module")
def segment_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _train("fcn", tmp_path_factory.mktemp("runs") / "fcn")


@pytest.fixture(scope="module")
def detect_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _train("yolo", tmp_path_factory.mktemp("runs") / "yolo", optimizer="adam")


@pytest.fixture(scope="module")
def classify_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return cnnlab.train(model="logistic", data="digits", epochs=1, out=tmp_path_factory.mktemp("runs") / "logistic",
                        quiet=True)


def _copy(run: Run, to: Path) -> Path:
    return Path(shutil.copytree(run.path, to))


def _is_png(path: str | Path) -> bool:
    return Path(path).read_bytes()[:8] == PNG


# -- cnnlab evaluate ----------------------------------------------------------------------------
def test_evaluate_a_segmenter(cli, segment_run: Run, tmp_path: Path) -> None:
    run = _copy(segment_run, tmp_path / "fcn")
    r = cli("evaluate", run, "--json")
    assert r.code == 0, r.err
    assert "NaN" not in r.out and "Infinity" not in r.out
    doc = json.loads(r.out)
    assert {"miou", "pixel_acc", "class_acc", "per_class", "loss", "files"} <= set(doc)
    assert list(doc["per_class"]) == ["background", "circle", "square", "triangle"]
    test = segment_run.test_result()  # the same weights on the same split, measured by training
    assert doc["miou"] == pytest.approx(test["test_miou"]) and doc["pixel_acc"] == pytest.approx(test["test_pixel_acc"])
    assert {"evaluation", "confusion", "masks"} <= set(doc["files"])
    assert all(Path(p).parent == run / "evaluation" / "shapes-test" for p in doc["files"].values())
    assert _is_png(doc["files"]["masks"]) and _is_png(doc["files"]["confusion"])

    r = cli("evaluate", run)
    assert r.code == 0, r.err
    assert f"mean IoU {doc['miou']:.4f} on the test images of shapes" in r.out and "pixel accuracy" in r.out
    assert re.search(r"class\s+.\s+IoU", r.out)


def test_evaluate_a_detector(cli, detect_run: Run, tmp_path: Path) -> None:
    run = _copy(detect_run, tmp_path / "yolo")
    r = cli("evaluate", run, "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert {"map", "map_50", "per_class", "loss", "files"} <= set(doc)
    assert set(doc["per_class"]) == {"circle", "square", "triangle"}
    assert all(set(s) == {"ap", "ap_50", "recall"} for s in doc["per_class"].values())
    assert doc["map_50"] == pytest.approx(detect_run.test_result()["test_map_50"])
    assert {"boxes", "pr-circle", "pr-square", "pr-triangle"} <= set(doc["files"])
    assert all(_is_png(p) for name, p in doc["files"].items() if name != "evaluation")

    r = cli("evaluate", run)
    assert r.code == 0, r.err
    assert "mAP@0.5" in r.out and "mAP@[.5:.95]" in r.out and "recall" in r.out


def test_a_class_absent_from_the_split_is_null_not_nan(tmp_path: Path) -> None:
    """No triangle in these masks and none predicted: its IoU is undefined, written as null."""
    data = load_data("shapes", image_size=SIDE)
    y = data.test.y[:4].clone()
    mask = y.get("mask")
    mask[mask == 3] = 0
    split = Split(data.test.x[:4], y)
    logits = F.one_hot(mask, 4).permute(0, 3, 1, 2).float()
    files = get_task("segment", data.classes).pictures(logits, split, tmp_path)
    text = files["evaluation"].read_text()
    assert "NaN" not in text
    doc = json.loads(text)
    assert doc["per_class"]["triangle"] is None and doc["miou"] == pytest.approx(1.0)


# -- --coco-results -----------------------------------------------------------------------------
def test_coco_results_of_a_detector_are_scored_alike_by_cocoeval(cli, detect_run: Run, tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    r = cli("evaluate", _copy(detect_run, tmp_path / "yolo"), "--json", "--coco-results", results)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    entries, truth = json.loads(results.read_text()), json.loads((tmp_path / "results-ground-truth.json").read_text())
    assert doc["files"]["coco_results"] == str(results)
    assert {e["image_id"] for e in entries} <= set(range(1, 25)) and len(truth["images"]) == 24  # split order, from 1
    assert all(len(e["bbox"]) == 4 and 0 <= e["score"] <= 1 and e["category_id"] in (1, 2, 3) for e in entries)
    assert abs(coco_eval(truth, entries)["map"] - doc["map"]) < 0.005


class Oracle(nn.Module):
    """A hand-made detector that knows the test scenes: it finds each image among them (the
    nearest) and proposes its true boxes, a fifth of them missed and the rest shifted by about
    10% of their size, plus two false boxes, all with random scores: a mAP well inside (0, 1)."""

    def __init__(self, x: Tensor, boxes: Tensor, labels: Tensor) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        n, m = labels.shape
        size = (boxes[..., 2:] - boxes[..., :2]).repeat(1, 1, 2)
        shifted = boxes + torch.randn(n, m, 4, generator=g) * 0.1 * size
        kept = (labels > 0) & (torch.rand(n, m, generator=g) > 0.2)
        false = torch.rand(n, 2, 2, generator=g) * 24
        false = torch.cat([false, false + 2 + torch.rand(n, 2, 2, generator=g) * 6], 2)
        scores = torch.zeros(n, m + 2, 4)
        scores[:, :m].scatter_(2, labels.clamp_min(0)[..., None], torch.rand(n, m, 1, generator=g) * kept[..., None])
        scores[:, m:].scatter_(2, torch.randint(1, 4, (n, 2, 1), generator=g), torch.rand(n, 2, 1, generator=g))
        self.register_buffer("scenes", x.flatten(1))
        self.register_buffer("answers", torch.cat([torch.cat([shifted, false], 1), scores], 2))  # (N, A, 4 + K)
        self.weight = nn.Parameter(torch.zeros(1))  # something for the optimizer

    def forward(self, x: Tensor) -> Tensor:
        return self.answers[torch.cdist(x.flatten(1), self.scenes).argmin(1)]

    def detection_loss(self, outputs: Tensor, boxes: Tensor, labels: Tensor) -> Tensor:
        return self.weight.square().sum()

    def candidates(self, outputs: Tensor) -> tuple[Tensor, Tensor]:
        return outputs[..., :4], outputs[..., 4:]


def test_cnnlabs_map_equals_cocoevals_on_its_own_results_file(tmp_path: Path) -> None:
    data = load_data("shapes", image_size=SIDE)
    oracle = lambda: Oracle(data.test.x, data.test.y.get("boxes"), data.test.y.get("labels"))  # noqa: E731
    # a module of one's own learns the task its data names: shapes' boxes, for detection
    as_detection = replace(data, task="detect", other_tasks=("segment",))
    trained = cnnlab.train(TrainConfig(data="shapes", image_size=SIDE), model=oracle(), data=as_detection, epochs=1,
                           batch_size=32, out=tmp_path / "oracle", quiet=True)
    run = Run.load(trained.path, model=oracle())
    results = tmp_path / "results.json"
    ours, _, files = evaluate_run(run, coco_results=results)
    theirs = coco_eval(json.loads(files["coco_ground_truth"].read_text()), json.loads(results.read_text()))
    assert 0.2 < ours["map"] < 0.9  # a case with something to get wrong
    assert abs(theirs["map"] - ours["map"]) < 0.005 and abs(theirs["map_50"] - ours["map_50"]) < 0.005


def test_coco_results_of_a_segmenter_are_rle_masks(cli, segment_run: Run, tmp_path: Path) -> None:
    results = tmp_path / "masks.json"
    r = cli("evaluate", _copy(segment_run, tmp_path / "fcn"), "--coco-results", results)
    assert r.code == 0, r.err
    assert isinstance(json.loads(results.read_text()), list)
    truth = json.loads((tmp_path / "masks-ground-truth.json").read_text())
    assert all(set(a["segmentation"]) == {"size", "counts"} for a in truth["annotations"])

    # the true masks as predictions: every class region is found exactly, mAP 1
    data = load_data("shapes", image_size=SIDE)
    task = get_task("segment", data.classes)
    logits = F.one_hot(data.test.y.get("mask"), 4).permute(0, 3, 1, 2).float()
    files = write_coco_predictions(task, logits, data.test, data, tmp_path / "truth.json")
    entries = json.loads(files["coco_results"].read_text())
    assert entries and all(e["segmentation"]["size"] == [SIDE, SIDE] and e["score"] == 1 for e in entries)
    assert coco_eval(json.loads(files["coco_ground_truth"].read_text()), entries, "segm")["map"] == pytest.approx(1.0)


def test_coco_results_of_a_classifier_are_refused(cli, classify_run: Run, tmp_path: Path) -> None:
    r = cli("evaluate", classify_run.path, "--coco-results", tmp_path / "r.json")
    assert r.code == 1 and "classify" in r.err and r.err.count("\n") == 1
    assert not (tmp_path / "r.json").exists()


# -- cnnlab predict -----------------------------------------------------------------------------
def _image_files(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    """Test scenes saved as PNG files of other sizes (width, height) than the run's input."""
    x = load_data("shapes", image_size=64).test.x
    folder.mkdir(exist_ok=True)
    paths = []
    for i, size in enumerate(sizes):
        pixels = (x[i].permute(1, 2, 0).numpy() * 255).round().astype("uint8")
        paths.append(folder / f"scene{i}.png")
        Image.fromarray(pixels).resize(size).save(paths[-1])
    return paths


def test_predict_masks(cli, segment_run: Run, tmp_path: Path) -> None:
    images = _image_files(tmp_path / "in", [(48, 40), (32, 32)])
    r = cli("predict", segment_run.path, *images, "--json", "--out", tmp_path / "out")
    assert r.code == 0, r.err
    found = json.loads(r.out)["predictions"]
    assert [p["image"] for p in found] == list(map(str, images))
    for p, size in zip(found, [(48, 40), (32, 32)], strict=True):
        mask = Image.open(p["mask"])
        assert Path(p["mask"]).parent == tmp_path / "out" and mask.mode == "L" and mask.size == size
        assert set(np.unique(np.asarray(mask))) <= {0, 1, 2, 3}  # class indices
        assert _is_png(p["picture"]) and Image.open(p["picture"]).size == size
        assert sum(p["pixels"].values()) == pytest.approx(1.0) and set(p["pixels"]) <= set(segment_run.classes)

    r = cli("predict", segment_run.path, images[0], images[0])  # the default folder; one name per picture
    assert r.code == 0, r.err
    assert "scene0-mask.png" in r.out and "scene0-2-mask.png" in r.out
    assert (segment_run.path / "predict" / "scene0-2-overlay.png").is_file()


def test_predict_boxes(cli, detect_run: Run, tmp_path: Path) -> None:
    images = _image_files(tmp_path / "in", [(64, 64)])
    r = cli("predict", detect_run.path, *images, "--json", "--out", tmp_path / "out")
    assert r.code == 0, r.err
    (found,) = json.loads(r.out)["predictions"]
    assert isinstance(found["boxes"], list) and _is_png(found["picture"])
    assert all(len(b["box"]) == 4 and b["class"] in detect_run.classes[1:] and b["score"] >= 0.5 for b in found["boxes"])


def test_boxes_are_told_in_the_files_own_pixels(tmp_path: Path) -> None:
    """A YOLO box at x1, y1, x2, y2 = 24, 36, 48, 52 of its 96 px input is at twice that in a 192 px file."""
    yolo = build_model("yolo", (3, 96, 96), 4)
    task = get_task("detect", ["background", "circle", "square", "triangle"]).bind(yolo)
    outputs = torch.zeros(1, 13, 6, 6)  # grid 6x6, two predictors per cell, three classes
    outputs[0, 4] = outputs[0, 9] = -30.0  # no object anywhere...
    outputs[0, :5, 2, 2] = torch.tensor([0.25, 0.75, 0.5, (1 / 6) ** 0.5, 0.99]).logit()  # ...but in cell (2, 2)
    outputs[0, 10:, 2, 2] = torch.tensor([-30.0, 30.0, -30.0])  # a square
    (found,) = task.predictions(outputs, (96, 96), [torch.rand(3, 192, 192)], ["scene"], tmp_path)
    (box,) = found["boxes"]
    assert box["class"] == "square" and box["score"] == pytest.approx(0.99, abs=1e-4)
    assert box["box"] == pytest.approx([48.0, 72.0, 96.0, 104.0], abs=1e-3)
    assert Image.open(found["picture"]).size == (192, 192)


# -- report, card, compare ----------------------------------------------------------------------
def test_the_report_shows_the_tasks_evaluation(segment_run: Run, detect_run: Run, tmp_path: Path) -> None:
    for trained, score, pictures in ((segment_run, "mean IoU", ["Test images: true and predicted masks"]),
                                     (detect_run, "mAP@0.5", ["Test images: true and predicted boxes",
                                                             "Precision-recall curves: circle"])):
        run = Run.load(_copy(trained, tmp_path / trained.name))
        assert "<h2>Evaluation" not in write_report(run).read_text()
        result, _, _ = evaluate_run(run)
        html = write_report(run).read_text()
        headings = re.findall(r"<h[23]>(.*?)</h[23]>", html)
        assert headings[:3] == ["Overview", "Training", "Evaluation on the test split"]
        assert set(pictures) <= set(headings)
        test = run.test_result()[f"test_{run.task.score}"]
        assert f"<td>test {score}</td><td>{test:.4f} (weights of the last epoch)</td>" in html
        assert f"<p>{score} <b>{result[run.task.score]:.4f}</b> on 24 images" in html
        assert f"<th>val {score}</th>" in html  # the training table shows the task's score


def test_the_card_states_the_tasks_metrics(segment_run: Run, tmp_path: Path) -> None:
    run = Run.load(_copy(segment_run, tmp_path / "fcn"))
    evaluate_run(run)
    md = write_card(run)["markdown"].read_text()
    assert "Mean IoU over the classes" in md and "labels every pixel" in md
    assert f"Test mean IoU **{run.test_result()['test_miou']:.4f}**" in md
    assert "| class | IoU |" in md and "Test accuracy" not in md


def test_compare_two_segmentation_runs(cli, segment_run: Run, tmp_path: Path) -> None:
    other = _train("fcn-dagrnn", tmp_path / "fcn-dagrnn")
    r = cli("compare", _copy(segment_run, tmp_path / "fcn"), other.path, "--out", tmp_path / "cmp", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["task"] == "segment" and doc["score"] == "test_miou"
    rows = {row["model"]: row for row in doc["rows"]}
    assert rows["fcn-dagrnn"]["test_miou"] == other.test_result()["test_miou"]
    assert rows["fcn"]["test_miou"] == segment_run.test_result()["test_miou"] and rows["fcn"]["params"] > 0
    assert all(_is_png(p) for p in doc["figures"].values())
    r = cli("compare", tmp_path / "fcn", other.path, "--out", tmp_path / "cmp")
    assert r.code == 0 and "IoU" in r.out and f"{100 * rows['fcn-dagrnn']['test_miou']:.1f}%" in r.out


def test_compare_refuses_runs_of_two_tasks(cli, segment_run: Run, detect_run: Run, classify_run: Run,
                                           tmp_path: Path) -> None:
    r = cli("compare", segment_run.path, detect_run.path, classify_run.path, "--out", tmp_path / "cmp")
    assert r.code == 1 and r.err.count("\n") == 1
    assert all(word in r.err for word in ("segment", "detect", "classify"))
    assert not (tmp_path / "cmp").exists()
