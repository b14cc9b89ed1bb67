"""Grad-CAM and PGD on detection and segmentation runs (`cnnlab explain`, `cnnlab attack`), and
the one sentence every classification-only analysis gives such a run.

The runs train for one epoch on `shapes` cut to 64 training and 16 test scenes of 32 px (a few
seconds each): too short to detect well, which is not what these tests check; they check what
holds for any detector: a box's Grad-CAM lights its box, PGD stays in its ball and climbs the
loss, and an attack that climbs the loss lowers the score.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.attack.tasks import robust_scores, task_pgd
from cnnlab.data import shapes as shapes_module
from cnnlab.explain.gradcam import backbone_layer, box_gradcam, chosen_boxes, region_gradcam
from cnnlab.models import eval_mode
from cnnlab.run import Run

SIDE = 32


@pytest.fixture(scope="module", autouse=True)
def small_shapes() -> Iterator[None]:
    """`shapes` with 64 training and 16 test scenes, for every load in this process."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shapes_module, "TRAIN_VAL", 64)
        mp.setattr(shapes_module, "TEST", 16)
        yield


def _train(model: str, out: Path) -> Run:
    return cnnlab.train(model=model, data="shapes", image_size=SIDE, epochs=1, batch_size=32, out=out, quiet=True,
                        optimizer="adam")


@pytest.fixture(scope="module")
def segment_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _train("fcn", tmp_path_factory.mktemp("runs") / "fcn")


@pytest.fixture(scope="module")
def detect_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _train("yolo", tmp_path_factory.mktemp("runs") / "yolo")


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory: pytest.TempPathFactory, detect_run: Run) -> Path:
    """A test scene saved as a PNG of the runs' size."""
    x = detect_run.load_data().test.x[0]
    path = tmp_path_factory.mktemp("images") / "scene.png"
    Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(path)
    return path


# -- Grad-CAM -----------------------------------------------------------------------------------
def test_gradcam_of_the_top_box_has_the_image_shape_and_lights_its_box(detect_run: Run) -> None:
    task, model = detect_run.task, detect_run.model
    x = detect_run.load_data().test.x[:3]
    with eval_mode(model):
        with torch.no_grad():
            outputs = model(x)
        found = task.decode(outputs, score_threshold=0.0)
        chosen = chosen_boxes(task.detector, outputs, found)
        maps = box_gradcam(model, task.detector, x, chosen)
    assert maps.shape == (3, 1, SIDE, SIDE) and (maps >= 0).all()
    assert backbone_layer(model) == "net.features.conv4_3"  # the backbone's last, not the 1x1 head
    _, scores = task.detector.candidates(outputs)
    for i, detected in enumerate(found):
        assert scores[i, chosen[i, 0], chosen[i, 1]] == detected["scores"][0]  # the very box NMS ranked first
        x1, y1, x2, y2 = detected["boxes"][0].round().long().clamp(0, SIDE).tolist()
        assert maps[i, 0, y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)].sum() > 0


def test_gradcam_of_a_class_region_has_the_image_shape(segment_run: Run) -> None:
    model = segment_run.model
    x = segment_run.load_data().test.x[:2]
    with eval_mode(model):
        maps = region_gradcam(model, x, torch.tensor([1, 2]))
    assert maps.shape == (2, 1, SIDE, SIDE) and (maps >= 0).all() and maps.sum() > 0


@pytest.mark.parametrize("kind", ["detect", "segment"])
def test_explain_writes_the_gradcam_png(cli, kind: str, detect_run: Run, segment_run: Run, scene_file: Path,
                                         tmp_path: Path) -> None:
    run = detect_run if kind == "detect" else segment_run
    png = tmp_path / "cam.png"
    r = cli("explain", run.path, scene_file, "--out", png, "--json")
    assert r.code == 0, r.err
    record = json.loads(r.out)
    assert record["task"] == kind and png.read_bytes()[:4] == b"\x89PNG"
    if kind == "detect":
        assert record["images"][0]["rank"] == 0 and len(record["images"][0]["box"]) == 4
    else:
        assert record["images"][0]["class"] in run.classes


def test_explain_a_box_past_the_last_is_one_sentence(cli, detect_run: Run, scene_file: Path) -> None:
    r = cli("explain", detect_run.path, scene_file, "--box", "100000")
    assert r.code == 1 and "--box" in r.err and r.err.count("\n") == 1


def test_explain_a_detection_run_by_class_is_one_sentence(cli, detect_run: Run, scene_file: Path) -> None:
    r = cli("explain", detect_run.path, scene_file, "--target", "square")
    assert r.code == 1 and "--box" in r.err and "--target" in r.err and r.err.count("\n") == 1


# -- PGD on the task's loss ---------------------------------------------------------------------
def test_pgd_on_the_detection_loss_stays_in_the_ball_and_raises_it(detect_run: Run) -> None:
    task, model = detect_run.task, detect_run.model
    test = detect_run.load_data().test
    x, y = test.x[:8], test.y[:8]
    eps = 0.05
    with eval_mode(model):
        torch.manual_seed(0)
        x_adv = task_pgd(model, task, x, y, eps, steps=5)
        with torch.no_grad():
            clean, attacked = task.loss(model(x), y), task.loss(model(x_adv), y)
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert attacked > clean


@pytest.mark.parametrize("kind", ["detect", "segment"])
def test_the_score_under_attack_is_at_most_the_clean_one(kind: str, detect_run: Run, segment_run: Run) -> None:
    run = detect_run if kind == "detect" else segment_run
    test = run.load_data().test
    result = robust_scores(run.model, run.task, test.x, test.y, eps=[0.1], steps=5)
    clean, attacked = result.points
    assert result.metric == ("map_50" if kind == "detect" else "miou")
    assert (clean.eps, attacked.eps) == (0.0, 0.1)
    assert attacked.score <= clean.score and attacked.loss > clean.loss


def test_attack_saves_the_robust_map_per_eps(cli, detect_run: Run) -> None:
    r = cli("attack", detect_run.path, "--eps", "0.02,0.1", "--steps", "2", "--n", "8", "--json")
    assert r.code == 0, r.err
    record = json.loads(r.out)
    assert record["metric"] == "map_50" and [p["eps"] for p in record["points"]] == [0.0, 0.02, 0.1]
    assert detect_run.results("attack/pgd-linf/robustness")["points"] == record["points"]
    assert all(Path(f).is_file() for f in record["files"].values())


def test_the_report_and_the_card_tell_the_robust_map(cli, detect_run: Run, tmp_path: Path) -> None:
    import shutil

    run = Path(shutil.copytree(detect_run.path, tmp_path / "yolo"))
    r = cli("attack", run, "--eps", "0.05", "--steps", "2", "--n", "8", "--json")
    assert r.code == 0, r.err
    clean, attacked = (p["score"] for p in json.loads(r.out)["points"])
    assert cli("report", run).code == 0 and cli("card", run).code == 0
    html = (run / "report.html").read_text()
    assert "<th>mAP@0.5</th>" in html and f"<td>{attacked:.4f}</td>" in html
    assert f"eps 0: mAP@0.5 {clean:.4f}, eps 0.05: mAP@0.5 {attacked:.4f}." in (run / "MODEL_CARD.md").read_text()


# -- what does not apply: one sentence, exit 1 --------------------------------------------------
REFUSED = {
    "audit bias": ("audit", "bias", "{run}"),
    "audit privacy": ("audit", "privacy", "{run}"),
    "influence": ("influence", "{run}", "--self"),
    "explain --sanity": ("explain", "{run}", "--sanity", "--n", "2"),
    "explain saliency": ("explain", "{run}", "{image}", "--method", "saliency"),
    "influence --image": ("influence", "{run}", "--image", "{image}"),
    "attack fgsm": ("attack", "{run}", "--attack", "fgsm", "--eps", "0.1"),
    "attack pgd l2": ("attack", "{run}", "--norm", "l2", "--eps", "0.5"),
}


@pytest.mark.parametrize("kind", ["detect", "segment"])
@pytest.mark.parametrize("analysis", list(REFUSED))
def test_a_classification_analysis_refuses_in_one_sentence(cli, kind: str, analysis: str, detect_run: Run,
                                                           segment_run: Run, scene_file: Path) -> None:
    run = detect_run if kind == "detect" else segment_run
    r = cli(*(a.format(run=run.path, image=scene_file) for a in REFUSED[analysis]))
    assert r.code == 1 and kind in r.err and r.err.count("\n") == 1, r.err
