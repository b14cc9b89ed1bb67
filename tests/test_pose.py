"""Pose estimation: stick figures, COCO keypoints files, flips that swap left and right, PCK and
PCP worked by hand, and deeppose trained through the spine (train, evaluate, predict, resume).

The runs train on `stick-figures` cut to 160 training and 40 test figures of 48 px (seconds);
the numbers that must be right are checked on hand-made cases where the answer is known.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import cnnlab
from cnnlab.data import load_data
from cnnlab.data import stick_figures as figures_module
from cnnlab.data.images import read_image
from cnnlab.data.stick_figures import JOINTS, figures
from cnnlab.data.targets import Targets, flip_targets, mirror_order
from cnnlab.errors import CnnlabError
from cnnlab.models import build_model
from cnnlab.run import WEIGHTS, Run
from cnnlab.tasks import get_task
from cnnlab.training import callbacks
from cnnlab.training.parts import Position

SIDE = 48


@pytest.fixture(scope="module", autouse=True)
def small_figures() -> Iterator[None]:
    """`stick-figures` with 160 training and 40 test figures, for every load in this process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batches of 16 small figures: a second thread only waits on a busy core
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(figures_module, "TRAIN_VAL", 176)
        mp.setattr(figures_module, "TEST", 40)
        yield
    torch.set_num_threads(threads)


def _train(out: Path, **options: object) -> Run:
    settings = {"model": "deeppose", "data": "stick-figures", "image_size": SIDE, "epochs": 3, "batch_size": 16,
                "optimizer": "adam", "lr": 3e-3, "out": out, "quiet": True, **options}
    return cnnlab.train(**settings)


@pytest.fixture(scope="module")
def pose_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _train(tmp_path_factory.mktemp("runs") / "deeppose")


# -- the generator ------------------------------------------------------------------------------
def test_figures_are_seeded_and_in_human_proportions() -> None:
    x, y = figures(64, 3, 64)
    again_x, again_y = figures(64, 3, 64)
    assert torch.equal(x, again_x) and torch.equal(y.get("keypoints"), again_y.get("keypoints"))
    assert not torch.equal(x, figures(64, 4, 64)[0])
    k = y.get("keypoints")
    assert x.shape == (64, 3, 64, 64) and k.shape == (64, 14, 3) and 0 <= x.min() and x.max() <= 1
    assert (k[..., :2] >= 0).all() and (k[..., :2] <= 63).all()  # every joint inside the image

    def length(a: str, b: str) -> torch.Tensor:
        return (k[:, JOINTS.index(a), :2] - k[:, JOINTS.index(b), :2]).norm(dim=1)

    torso = (k[:, JOINTS.index("neck"), :2] - (k[:, 2, :2] + k[:, 3, :2]) / 2).norm(dim=1)
    for (a, b), share in {("right_shoulder", "right_elbow"): 0.6, ("left_elbow", "left_wrist"): 0.55,
                          ("left_hip", "left_knee"): 0.85, ("right_knee", "right_ankle"): 0.8}.items():
        ratio = length(a, b) / torso
        assert (ratio >= share * 0.85 - 0.01).all() and (ratio <= share * 1.15 + 0.01).all(), (a, b)
    flags = k[..., 2]
    assert set(flags.unique().tolist()) <= {1.0, 2.0} and (flags == 1).any() and (flags == 2).float().mean() > 0.9
    assert (y.get("keypoints_mirror") == torch.tensor(mirror_order(JOINTS))).all()


def test_a_figure_faces_the_viewer() -> None:
    """The figure's right side is on the image's left, as in LSP's frontal pictures."""
    k = figures(64, 5, 64)[1].get("keypoints")
    right, left = k[:, JOINTS.index("right_hip"), 0], k[:, JOINTS.index("left_hip"), 0]
    assert (right < left).float().mean() > 0.9  # turned by up to 30 degrees: hips stay in order


# -- flips --------------------------------------------------------------------------------------
def test_a_flip_moves_the_joints_and_swaps_left_and_right() -> None:
    names = ["left_wrist", "right_wrist", "neck"]
    keypoints = torch.tensor([[[2.0, 5.0, 2.0], [7.0, 6.0, 1.0], [4.0, 1.0, 2.0]]])
    y = Targets({"keypoints": keypoints, "keypoints_mirror": torch.tensor([mirror_order(names)])},
                {"keypoints": "keypoints", "keypoints_mirror": "label"})
    flipped = flip_targets(y, torch.tensor([True]), width=10).get("keypoints")[0]
    # the right wrist at x 7 is mirrored to x 2 and becomes the left wrist; the left one, at 2, goes to 7
    assert flipped.tolist() == [[2.0, 6.0, 1.0], [7.0, 5.0, 2.0], [5.0, 1.0, 2.0]]
    assert torch.equal(flip_targets(y, torch.tensor([False]), width=10).get("keypoints"), keypoints)


def test_flip_test_time_augmentation_mirrors_back_and_swaps_names() -> None:
    class Fixed(torch.nn.Module):  # the same joints whatever the image: left wrist at x 2, right at 7
        def __init__(self) -> None:
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tensor([[2.0, 5.0, 7.0, 6.0, 4.0, 1.0]]).expand(len(x), -1)

    task = get_task("pose", ["left_wrist", "right_wrist", "neck"])
    got = task.outputs(Fixed(), torch.zeros(1, 3, 8, 10), tta=True)
    # the mirror's right wrist (7, 6) is the image's left wrist at x 9 - 7 = 2: the mean of (2, 5) and (2, 6)
    assert got[0, -1].tolist() == [[2.0, 5.5], [7.0, 5.5], [4.5, 1.0]]


# -- PCK and PCP worked by hand -----------------------------------------------------------------
def _person(estimate_shift: dict[str, tuple[float, float]]) -> tuple[torch.Tensor, Targets]:
    """One figure: left shoulder at (0, 0) and right hip at (6, 8): torso diameter 10."""
    truth = torch.zeros(1, 14, 3)
    truth[..., 2] = 2
    for j in range(14):
        truth[0, j, :2] = torch.tensor([3.0 * j, 2.0 * j])
    truth[0, JOINTS.index("left_shoulder"), :2] = torch.tensor([0.0, 0.0])
    truth[0, JOINTS.index("right_hip"), :2] = torch.tensor([6.0, 8.0])
    estimate = truth[..., :2].clone()
    for name, (dx, dy) in estimate_shift.items():
        estimate[0, JOINTS.index(name)] += torch.tensor([dx, dy])
    y = Targets({"keypoints": truth}, {"keypoints": "keypoints"})
    return estimate, y


def test_pck_counts_joints_within_a_share_of_the_torso() -> None:
    task = get_task("pose", JOINTS)
    # torso 10: PCK@0.2 allows 2 px, PCK@0.05 0.5 px
    estimate, y = _person({"neck": (1.5, 0.0), "head_top": (0.0, 3.0), "right_knee": (0.4, 0.4), "left_wrist": (0.4, 0.0)})
    got = task.metrics(estimate.view(1, -1), y)
    assert got["pck20"] == pytest.approx(13 / 14)  # only head_top is 3 px off
    assert got["pck05"] == pytest.approx(11 / 14)  # neck (1.5) and right_knee (0.57) too
    assert got["per_class"]["head_top"]["pck20"] == 0 and got["per_class"]["neck"]["pck05"] == 0
    assert got["per_class"]["left_wrist"]["pck05"] == 1  # 0.4 px: within 0.5


def test_pck_leaves_out_unlabelled_joints_and_images_without_a_torso() -> None:
    task = get_task("pose", JOINTS)
    estimate, y = _person({"head_top": (0.0, 3.0)})
    y.get("keypoints")[0, JOINTS.index("head_top"), 2] = 0  # not labelled: counted nowhere
    assert task.metrics(estimate.view(1, -1), y)["pck20"] == 1
    y.get("keypoints")[0, JOINTS.index("right_hip"), 2] = 0  # no torso: the image counts nowhere
    assert math.isnan(task.metrics(estimate.view(1, -1), y)["pck20"])


def test_pcp_wants_both_ends_within_half_the_limb() -> None:
    task = get_task("pose", JOINTS)
    # the right shin runs from the ankle (0, 0) to the knee (3, 2): length sqrt(13) = 3.61, half 1.80
    estimate, y = _person({"right_ankle": (1.7, 0.0), "right_knee": (0.0, 1.9), "left_wrist": (0.0, 1.0)})
    got = task.metrics(estimate.view(1, -1), y)
    # the shin fails (its knee end is 1.9 off); the thigh, from the knee to the hip (6, 8), is
    # sqrt(45) = 6.71 long, so the same knee is within its half; the left forearm (its wrist
    # 1 px off, half its length 1.80) holds: 8 of the 9 limbs are right
    assert got["per_limb"]["right_ankle-right_knee"] == 0 and got["per_limb"]["right_knee-right_hip"] == 1
    assert got["per_limb"]["left_wrist-left_elbow"] == 1
    assert got["pcp"] == pytest.approx(8 / 9)


def test_every_stage_of_a_cascade_is_scored() -> None:
    task = get_task("pose", JOINTS)
    final, y = _person({})
    first, _ = _person({name: (3.0, 0.0) for name in JOINTS[:7]})
    got = task.metrics(torch.stack([first, final], 1), y)
    assert got["stage1_pck20"] == pytest.approx(7 / 14) and got["pck20"] == 1
    assert got["per_class"]["right_ankle"] == {"stage1_pck20": 0, "stage1_pck05": 0, "pck20": 1, "pck05": 1}


# -- COCO keypoints files -----------------------------------------------------------------------
NAMES = ["nose", "left_shoulder", "right_shoulder", "left_hip", "right_hip"]


def coco_keypoints_folder(root: Path, people: list[dict], extra_images: int = 0) -> Path:
    (root / "images").mkdir(parents=True)
    images = []
    for i in range(1 + extra_images):
        Image.new("RGB", (40, 40), (200, 100, 50)).save(root / "images" / f"p{i}.png")
        images.append({"id": i + 1, "file_name": f"p{i}.png", "width": 40, "height": 40})
    doc = {"images": images, "annotations": people,
           "categories": [{"id": 1, "name": "person", "keypoints": NAMES, "skeleton": [[2, 4], [3, 5], [2, 3]]}]}
    (root / "train.json").write_text(json.dumps(doc))
    return root


def person_annotation(i: int, image: int, keypoints: list[float], **extra: object) -> dict:
    return {"id": i, "image_id": image, "category_id": 1, "keypoints": keypoints, "bbox": [10, 10, 20, 20],
            "num_keypoints": sum(1 for v in keypoints[2::3] if v > 0), "iscrowd": 0, **extra}


def test_coco_keypoints_cuts_each_person_out_with_its_joints(tmp_path: Path) -> None:
    good = [20, 20, 2, 12, 14, 2, 28, 14, 1, 14, 26, 2, 0, 0, 0]
    people = [person_annotation(i, i, good) for i in range(1, 11)]
    data = load_data(f"coco-keypoints:{coco_keypoints_folder(tmp_path / 'c', people, extra_images=9)}", image_size=50, val_fraction=0.1)
    assert data.task == "pose" and data.classes == NAMES and data.input_shape == (3, 50, 50)
    assert len(data.train) + len(data.val) + len(data.test) == 10 and len(data.test) == 2
    k = data.train.y.get("keypoints")[0]
    # bbox [10, 10, 20, 20] enlarged 1.25 times: a square of 25 from 7.5; 50 / 25 = 2 px a pixel
    assert k[0].tolist() == pytest.approx([(20.5 - 7.5) * 2 - 0.5, (20.5 - 7.5) * 2 - 0.5, 2])
    assert k[2, 2] == 1 and k[4].tolist() == [0, 0, 0]  # hidden stays hidden; unlabelled stays unlabelled
    assert data.train.y.get("keypoints_mirror")[0].tolist() == [0, 2, 1, 4, 3]
    assert "left_shoulder-left_hip" in data.meta["skeleton"]


@pytest.mark.parametrize(("broken", "says"), [
    ({"keypoints": [1, 2, 2]}, "needs 'keypoints' as 15 numbers"),
    ({"num_keypoints": 4}, "says num_keypoints 4 but labels 3 joints"),
    ({"keypoints": [20, 20, 3, 12, 14, 2, 28, 14, 1, 0, 0, 0, 0, 0, 0]}, "has a visibility flag other than 0, 1 or 2"),
    ({"keypoints": [90, 20, 2, 12, 14, 2, 28, 14, 1, 0, 0, 0, 0, 0, 0]}, "has a joint outside the 40x40 image"),
])
def test_a_broken_person_is_named_in_one_sentence(tmp_path: Path, broken: dict, says: str) -> None:
    good = [20, 20, 2, 12, 14, 2, 28, 14, 1, 0, 0, 0, 0, 0, 0]
    people = [person_annotation(1, 1, good), {**person_annotation(2, 2, good), **broken}]
    root = coco_keypoints_folder(tmp_path / "c", people, extra_images=1)
    with pytest.raises(CnnlabError, match=f"image 2 \\(p1.png\\) of train.json: annotation 2 {says}"):
        load_data(f"coco-keypoints:{root}", on_corrupt="error")
    with pytest.warns(UserWarning, match="p1.png"):
        data = load_data(f"coco-keypoints:{root}", val_fraction=0.0)
    assert len(data.train) + len(data.test) == 1 and "annotation 2" in data.meta["skipped"]


def test_deeppose_trains_and_predicts_on_coco_keypoints(tmp_path: Path) -> None:
    good = [20, 20, 2, 12, 14, 2, 28, 14, 1, 14, 26, 2, 0, 0, 0]
    root = coco_keypoints_folder(tmp_path / "c", [person_annotation(i, i, good) for i in range(1, 11)], extra_images=9)
    run = cnnlab.train(model="deeppose", data=f"coco-keypoints:{root}", image_size=32, epochs=2, batch_size=4,
                       optimizer="adam", schedule="none", out=tmp_path / "run", quiet=True)
    assert run.task.name == "pose" and run.classes == NAMES
    assert math.isfinite(run.test_result()["test_loss"])  # PCK counts nothing here: no right hip, no torso
    (found,) = run.predict_files([root / "images" / "p0.png"], out=tmp_path / "out")
    assert set(found["joints"]) == set(NAMES) and Path(found["picture"]).is_file()


def test_a_file_without_a_keypoints_category_is_refused(tmp_path: Path) -> None:
    root = coco_keypoints_folder(tmp_path / "c", [])
    doc = json.loads((root / "train.json").read_text())
    doc["categories"] = [{"id": 1, "name": "person"}]
    (root / "train.json").write_text(json.dumps(doc))
    with pytest.raises(CnnlabError, match="needs exactly one .* with 'keypoints' names"):
        load_data(f"coco-keypoints:{root}")


# -- deeppose through the spine -----------------------------------------------------------------
def test_deeppose_learns_and_its_cascade_is_kept(pose_run: Run) -> None:
    epochs = [m for m in pose_run.metrics() if m["event"] == "epoch"]
    test = pose_run.test_result()
    assert epochs[-1]["train_pck20"] > epochs[0]["train_pck20"]
    data = pose_run.load_data()
    untrained = build_model("deeppose", data.input_shape, data.num_classes, *data.stats())
    before = get_task("pose", data.classes).evaluate(untrained, data.test)  # every joint at the image's centre
    assert test["test_stage1_pck20"] > 2 * before["stage1_pck20"] and "test_pck05" in test
    outputs = pose_run.task.outputs(pose_run.model, pose_run.load_data().test.x[:3])
    assert outputs.shape == (3, 2, 14, 2)  # stage 1 and the refinement


def test_cli_evaluate_and_predict_a_pose_run(cli, pose_run: Run, tmp_path: Path) -> None:
    result = cli("evaluate", pose_run.path, "--json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert {"pck20", "pck05", "pcp", "stage1_pck20", "stage1_pck05"} <= doc.keys()
    assert Image.open(doc["files"]["skeletons"]).size[0] > 0
    table = cli("evaluate", pose_run.path)
    assert "stage 1 PCK@0.2" in table.out and "PCK@0.05" in table.out

    x = load_data("stick-figures", image_size=SIDE).test.x[0]
    Image.fromarray((x.permute(1, 2, 0) * 255).byte().numpy()).resize((96, 72)).save(tmp_path / "me.png")
    result = cli("predict", pose_run.path, tmp_path / "me.png", "--out", tmp_path / "out", "--json")
    assert result.code == 0, result.err
    found = json.loads(result.out)["predictions"][0]
    assert set(found["joints"]) == set(JOINTS)
    assert Image.open(found["picture"]).size == (96 * 2, 72 * 2)  # enlarged so the skeleton reads
    # a 96x72 file of a 48x48 input: x scales by 2, y by 1.5, about pixel centres
    seen = read_image(tmp_path / "me.png", 3, (SIDE, SIDE))  # the file as the model sees it
    first = pose_run.task.decode(pose_run.task.outputs(pose_run.model, seen[None]))[0, 0]
    assert found["joints"][JOINTS[0]] == pytest.approx([(first[0].item() + 0.5) * 2 - 0.5, (first[1].item() + 0.5) * 1.5 - 0.5],
                                                      abs=1e-3)


@pytest.mark.slow  # a budget of 10 s is spent whole
def test_a_time_budget_plans_a_pose_run(tmp_path: Path) -> None:
    """The budget times steps on a copy of the model: the cascade's own loss must not need the copy's maps."""
    run = cnnlab.train(model="deeppose", data="stick-figures", image_size=SIDE, batch_size=16, optimizer="adam",
                       budget=10.0, out=tmp_path / "run", quiet=True)
    assert run.config.epochs >= 1 and run.provenance["budget"]["epochs"] == run.config.epochs
    assert run.test_result()["test_pck20"] >= 0


def test_cli_train_json_on_a_pose_run(cli, tmp_path: Path) -> None:
    result = cli("train", "--model", "deeppose", "--data", "stick-figures", "--image-size", str(SIDE), "--epochs", "1",
                 "--batch-size", "64", "--out", tmp_path / "run", "--json")
    assert result.code == 0, result.err
    assert "test_pck20" in json.dumps(json.loads(result.out))


def test_a_pose_run_resumes_exactly(pose_run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = callbacks.checkpoint

    def crash_inside_epoch_2(run: Run, parts: object, pos: Position) -> None:
        real(run, parts, pos)
        if pos.epoch == 1 and pos.batch > 0:  # as a kill -9 right after the checkpoint
            raise KeyboardInterrupt

    monkeypatch.setattr(callbacks, "checkpoint", crash_inside_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "run", checkpoint_every=2)
    monkeypatch.setattr(callbacks, "checkpoint", real)
    cnnlab.resume(tmp_path / "run", quiet=True)
    a, b = load_file(str(pose_run.path / WEIGHTS)), load_file(str(tmp_path / "run" / WEIGHTS))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the spread buffer too
