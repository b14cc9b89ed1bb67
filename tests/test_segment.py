"""Segmentation: the metrics on a hand-worked case, the shapes scenes, the FCN and its DAG-RNN
context, and a real training through `cnnlab.train`."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlab
from cnnlab.data import Dataset, Split, augment, load_data
from cnnlab.data import shapes as shapes_module
from cnnlab.data.shapes import scenes
from cnnlab.data.targets import IGNORE, Targets
from cnnlab.errors import CnnlabError
from cnnlab.models import build_model
from cnnlab.models.fcn import southeast_sweep
from cnnlab.tasks import get_task

# A 2x3 image, 4 classes; class 3 is neither true nor predicted anywhere, one pixel is unlabelled.
TRUE = [[0, 0, 1], [1, 2, IGNORE]]
PREDICTED = [[0, 1, 1], [2, 2, 0]]
# Over the 5 labelled pixels, confusion (row = true) [[1, 1, 0], [0, 1, 1], [0, 0, 1]]:
# IoU 1/(2+1-1), 1/(2+2-1), 1/(1+2-1); pixel accuracy 3/5; class accuracy (1/2 + 1/2 + 1/1) / 3.
IOU = [1 / 2, 1 / 3, 1 / 2]


def _hand_case() -> tuple[torch.Tensor, Targets]:
    logits = 5.0 * F.one_hot(torch.tensor([PREDICTED]), 4).permute(0, 3, 1, 2).float()  # (1, 4, 2, 3)
    return logits, Targets({"mask": torch.tensor([TRUE])}, {"mask": "mask"})


def test_metrics_of_a_hand_worked_case() -> None:
    task = get_task("segment", ["a", "b", "c", "d"])
    logits, y = _hand_case()
    got = task.metrics(logits, y)
    assert got["miou"] == pytest.approx(sum(IOU) / 3)  # class d has no IoU and is left out of the mean
    assert got["pixel_acc"] == pytest.approx(3 / 5)
    assert got["class_acc"] == pytest.approx(2 / 3)
    assert [got["per_class"][c] for c in "abc"] == pytest.approx(IOU) and math.isnan(got["per_class"]["d"])
    right, wrong = math.log(math.exp(5) + 3) - 5, math.log(math.exp(5) + 3)  # cross-entropy of each pixel
    assert got["loss"] == pytest.approx((3 * right + 2 * wrong) / 5, rel=1e-5)
    assert task.train_summary(task.train_sums(logits, y).tolist(), seen=1) == {"pixel_acc": pytest.approx(3 / 5)}
    assert torch.equal(task.decode(logits), torch.tensor([PREDICTED]))


def test_miou_agrees_with_torchmetrics() -> None:
    from torchmetrics.functional.classification import multiclass_jaccard_index

    logits, y = _hand_case()
    ours = get_task("segment", ["a", "b", "c"]).metrics(logits[:, :3], y)["miou"]
    theirs = multiclass_jaccard_index(logits[:, :3].argmax(1), y.get("mask"), 3, ignore_index=IGNORE)
    assert ours == pytest.approx(theirs.item()) == pytest.approx(4 / 9)


def test_flip_tta_mirrors_the_pixel_scores_back() -> None:
    # a 1x1 convolution scores each pixel alone, so its mirrored scores mirrored back are its scores
    model = nn.Conv2d(3, 4, 1)
    x = torch.rand(2, 3, 8, 10)
    task = get_task("segment", ["a", "b", "c", "d"])
    assert torch.allclose(task.outputs(model, x, tta=True), task.outputs(model, x), atol=1e-6)


@pytest.fixture(scope="module")
def small_shapes() -> Dataset:
    return load_data("shapes", image_size=32)


def test_wrong_output_shape_is_one_sentence(small_shapes: Dataset) -> None:
    task = get_task("segment", small_shapes.classes)
    with pytest.raises(CnnlabError, match=r"shapes needs \(N, 4, 32, 32\) logits"):
        task.check_outputs(torch.zeros(2, 4), small_shapes)
    task.check_outputs(torch.zeros(2, 4, 32, 32), small_shapes)


def test_pictures_show_true_and_predicted_masks(small_shapes: Dataset, tmp_path) -> None:
    task = get_task("segment", small_shapes.classes)
    test = Split(small_shapes.test.x[:20], small_shapes.test.y[:20])
    perfect = 10.0 * F.one_hot(test.y.get("mask"), 4).permute(0, 3, 1, 2).float()
    files = task.pictures(perfect, test, tmp_path)
    assert {p.name for p in files.values()} == {"evaluation.json", "confusion.png", "masks.png"}
    assert files["masks"].stat().st_size > 10_000 and files["confusion"].stat().st_size > 1_000
    assert json.loads(files["evaluation"].read_text())["miou"] == 1.0


def test_shapes_is_seeded_and_complete(small_shapes: Dataset) -> None:
    assert small_shapes.task == "segment" and small_shapes.classes == ["background", "circle", "square", "triangle"]
    assert [len(s) for s in small_shapes.splits().values()] == [2_025, 225, 500]
    assert small_shapes.sha256() == load_data("shapes", image_size=32).sha256()  # same seed, same bytes
    x, y = scenes(6, seed=3, side=48)
    assert x.shape == (6, 3, 48, 48) and 0 <= x.min() and x.max() <= 1
    assert torch.equal(x, scenes(6, seed=3, side=48)[0]) and not torch.equal(x, scenes(6, seed=4, side=48)[0])
    labels = y.get("labels")
    assert ((labels >= 0).sum(1) >= 1).all() and set(labels.unique().tolist()) <= {-1, 1, 2, 3}


def _check_drawn(x: torch.Tensor, y: Targets, tight: bool) -> None:
    """Noise-free scenes: each object is one flat colour, so the pixels of each colour that is not
    the background's must be exactly one object's, of its class, inside (tight: exactly) its box;
    the pixels a crop brought in (zeros) are exactly the IGNORE ones."""
    mask, boxes, labels = y.get("mask"), y.get("boxes"), y.get("labels")
    for i in range(len(x)):
        padding = (x[i] == 0).all(0)
        assert torch.equal(padding, mask[i] == IGNORE)
        objects = (mask[i] > 0) & ~padding
        colours, which = x[i].permute(1, 2, 0)[objects].unique(dim=0, return_inverse=True)
        assert len(colours) <= (labels[i] >= 0).sum()  # (an object can leave the image after a crop)
        background = x[i].permute(1, 2, 0)[mask[i] == 0]
        for k, colour in enumerate(colours):
            assert not (background == colour).all(1).any()
            rows, cols = torch.nonzero(objects, as_tuple=True)
            rows, cols = rows[which == k], cols[which == k]
            assert len(mask[i][rows, cols].unique()) == 1  # one class
            region = torch.tensor([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]).float()
            same_class = boxes[i][labels[i] == mask[i][rows[0], cols[0]]]
            if tight:
                assert (same_class == region).all(1).any()
            else:
                assert ((same_class[:, :2] <= region[:2]) & (same_class[:, 2:] >= region[2:])).all(1).any()


def test_masks_and_boxes_match_the_drawn_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shapes_module, "NOISE", 0.0)
    x, y = scenes(24, seed=5, side=64)
    _check_drawn(x, y, tight=True)
    assert (y.get("labels") >= 0).sum() > 24  # some scenes hold several objects, overlapping or not


def test_crop_and_flip_move_the_scene_and_its_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shapes_module, "NOISE", 0.0)
    x, y = scenes(24, seed=6, side=64)
    xa, ya = augment(x, y, ("crop", "flip"), torch.Generator().manual_seed(0))
    assert (ya.get("mask") == IGNORE).any() and not torch.equal(xa, x)
    _check_drawn(xa, ya, tight=False)  # a crop clips boxes; an occluded object's pixels may then sit inside


def test_southeast_sweep_is_the_recurrence_cell_by_cell() -> None:
    torch.manual_seed(0)
    u, w = torch.randn(2, 3, 5, 4, 6), 0.3 * torch.randn(2, 5, 5)
    h = torch.zeros(2, 3, 5, 5, 7)  # one row and column of zero states before the map
    for i in range(4):
        for j in range(6):
            heard = h[..., i, j + 1] + h[..., i + 1, j] + h[..., i, j]  # north, west, north-west
            h[..., i + 1, j + 1] = torch.relu(u[..., i, j] + torch.einsum("dkh,dnh->dnk", w, heard))
    got = southeast_sweep(u, w)
    assert got.abs().sum() > 0 and torch.allclose(got, h[..., 1:, 1:], atol=1e-5)


def test_dagrnn_starts_as_the_fcn_and_both_label_every_pixel() -> None:
    torch.manual_seed(0)
    fcn, dagrnn = build_model("fcn", (3, 40, 56), 5), build_model("fcn-dagrnn", (3, 40, 56), 5)
    missing = dagrnn.load_state_dict(fcn.state_dict(), strict=False).missing_keys
    assert missing and all(".context." in k for k in missing)  # the only difference is the context module
    x = torch.rand(2, 3, 40, 56)
    with torch.no_grad():
        assert fcn.eval()(x).shape == (2, 5, 40, 56)
        assert torch.allclose(dagrnn.eval()(x), fcn(x), atol=1e-6)  # its BatchNorm scale starts at zero


def test_fcn_sees_76_pixels_and_fcn_dagrnn_the_whole_image() -> None:
    """The input pixels that reach the centre pixel's scores (a nonzero gradient): `fcn`'s
    receptive field, 68 px at stride 8 widened by the bilinear upsampling, against the DAG-RNN's
    four sweeps over the whole map (its BatchNorm scale set to 1: at 0 the context is off)."""
    torch.manual_seed(0)
    fcn, dagrnn = build_model("fcn", (3, 96, 96), 6).eval(), build_model("fcn-dagrnn", (3, 96, 96), 6).eval()
    torch.nn.init.ones_(dagrnn.net.context.norm.weight)
    seen = {}
    for name, model in (("fcn", fcn), ("fcn-dagrnn", dagrnn)):
        x = torch.rand(4, 3, 96, 96, requires_grad=True)
        model(x)[:, :, 48, 48].sum().backward()
        rows = torch.nonzero(x.grad.abs().sum((0, 1, 3)) > 0).flatten()
        seen[name] = (rows.min().item(), rows.max().item())
    assert seen == {"fcn": (48 - 38, 48 + 37), "fcn-dagrnn": (0, 95)}


def test_fcn_learns_shapes_through_train(tmp_path) -> None:
    # Measured (32 px, 2 epochs, batch 32, seed 0): test mIoU 0.68, pixel accuracy 0.94. Untrained
    # fcn and fcn-dagrnn, seeds 0-4: mIoU 0.01-0.22 (0.22: every pixel called background).
    run = cnnlab.train(model="fcn", data="shapes", image_size=32, epochs=2, batch_size=32,
                       out=tmp_path / "fcn", quiet=True)
    test = run.test_result()
    assert test["test_miou"] > 0.5 and test["test_pixel_acc"] > 0.9
    assert set(test["test_per_class"]) == {"background", "circle", "square", "triangle"}


def test_a_classifier_on_shapes_is_one_sentence_naming_both(tmp_path) -> None:
    with pytest.raises(CnnlabError, match="lenet5.*shapes|shapes.*lenet5") as e:
        cnnlab.train(model="lenet5", data="shapes", image_size=32, epochs=1, out=tmp_path / "r", quiet=True)
    assert "segment" in str(e.value) and "\n" not in str(e.value)
