"""Action recognition: the moving-actions clips, video files through `videofolder:` (an .mp4
written with PyAV's encoder, a .gif with Pillow), the video models, and the video task through
the shared spine (train, evaluate, predict with an annotated GIF, resume).

The runs train for a few epochs on a dozen small files: too short to show much learning, which
the acceptance runs in docs/results.md measure; these check what a user relies on."""

from __future__ import annotations

import json
import math
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import cnnlab
from cnnlab.data import Dataset, Split, augment, load_data
from cnnlab.data.moving_actions import ANCHOR, CLASSES, FRAMES, clips
from cnnlab.data.targets import mirror_order
from cnnlab.errors import CnnlabError
from cnnlab.models import build_model
from cnnlab.run import WEIGHTS, Run
from cnnlab.tasks.base import get_task
from cnnlab.tasks.video import stream_accuracies
from cnnlab.training import callbacks

SIDE = 24  # written video frames; videofolder stretches them to its 32x32 default


def bar_frames(direction: int, start: int, n: int = 8) -> np.ndarray:
    """(n, SIDE, SIDE, 3) uint8: a bright bar on a dark ground, moving 2 px a frame right (+1) or left (-1)."""
    frames = np.full((n, SIDE, SIDE, 3), 30, np.uint8)
    for t in range(n):
        x = start + direction * 2 * t
        frames[t, 4:20, max(x, 0):max(x + 4, 0)] = (230, 200, 60)
    return frames


def write_mp4(path: Path, frames: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = SIDE, SIDE, "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())  # flush the encoder
    return path


def write_gif(path: Path, frames: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=125, loop=0)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """videos/left and videos/right: 4 .mp4 and 2 .gif each."""
    root = tmp_path_factory.mktemp("videos")
    for name, direction in (("left", -1), ("right", 1)):
        for i in range(6):
            start = 14 - i if direction < 0 else 2 + i
            write = write_mp4 if i < 4 else write_gif
            write(root / name / f"{name}{i}.{'mp4' if i < 4 else 'gif'}", bar_frames(direction, start))
    return root


# -- moving-actions ---------------------------------------------------------------------------
def test_clips_are_a_function_of_the_seed() -> None:
    a, ya = clips(24, seed=3, side=16)
    b, yb = clips(24, seed=3, side=16)
    c, _ = clips(24, seed=4, side=16)
    assert a.shape == (24, FRAMES, 1, 16, 16) and a.dtype == torch.float32 and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b) and torch.equal(ya, yb) and not torch.equal(a, c)
    assert torch.bincount(clips(64, seed=3, side=16)[1], minlength=8).tolist() == [8] * 8  # balanced


def test_one_frame_does_not_carry_the_class() -> None:
    """The same clips drawn as each of the 8 motions: their anchor frame (frame-cnn's) is the same
    pixels whatever the class, while the frames around it differ, so only motion tells them apart."""
    drawn = [clips(16, seed=5, side=16, labels=torch.full((16,), k))[0] for k in range(len(CLASSES))]
    for x in drawn[1:]:
        assert torch.equal(x[:, ANCHOR], drawn[0][:, ANCHOR])
        assert (x[:, 0] - drawn[0][:, 0]).abs().amax((1, 2, 3)).min() > 0.2  # every clip moved differently


def test_augmentation_moves_every_frame_of_a_clip_alike() -> None:
    x = torch.rand(6, 4, 2, 8, 8)
    g = torch.Generator().manual_seed(0)
    flipped, _ = augment(x, torch.zeros(6, dtype=torch.long), ("flip",), g)
    for i in range(6):  # each clip flipped whole, or left whole
        assert torch.equal(flipped[i], x[i].flip(-1)) or torch.equal(flipped[i], x[i])
    cropped, _ = augment(x, torch.zeros(6, dtype=torch.long), ("crop",), torch.Generator().manual_seed(1))
    for i in range(6):  # one offset per clip: every frame equals the first one's crop of itself
        moved = [(dy, dx) for dy in range(-1, 2) for dx in range(-1, 2)
                 if all(torch.equal(cropped[i, t], _shifted(x[i, t], dy, dx)) for t in range(4))]
        assert len(moved) == 1


class Centroid(torch.nn.Module):
    """A mirror-exact reader of the motion: scores "left" and "right" by how far the clip's
    x-centroid moves from its first frame to its last, every other class 0."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))  # a parameter tells cnnlab the model's device

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, C, H, W)
        mass = x.sum((2, 3))  # (N, T, W)
        cx = (mass * torch.arange(x.shape[-1], dtype=x.dtype)).sum(-1) / mass.sum(-1)
        d = self.scale * (cx[:, -1] - cx[:, 0])
        out = torch.zeros(len(x), len(CLASSES))
        out[:, CLASSES.index("left")], out[:, CLASSES.index("right")] = -d, d
        return out


def test_a_flip_turns_left_into_right_for_the_labels_and_the_scores() -> None:
    """A mirrored clip that moved left moves right: flipped labels follow the class names, and
    flip test-time augmentation reads the mirror's scores back in the original's classes."""
    mirror = mirror_order(CLASSES)
    assert [CLASSES[i] for i in mirror] == ["right", "left", "up", "down", "rotate-ccw", "rotate-cw", "grow", "shrink"]
    x, y = clips(8, seed=5, labels=torch.tensor([CLASSES.index("left"), CLASSES.index("right")]).repeat(4))
    model = Centroid()
    assert torch.equal(model(x).argmax(1), y)  # the toy model reads the motion
    flipped, fy = augment(x, y, ("flip",), torch.Generator().manual_seed(0), torch.tensor(mirror))
    assert not torch.equal(fy, y) and torch.equal(model(flipped).argmax(1), fy)  # each label is its clip's new direction
    plain, tta = (get_task("video", CLASSES).outputs(model, x, tta=on) for on in (False, True))
    assert torch.allclose(tta, plain, atol=1e-4)  # the mirror's "right" is the original's "left"
    assert torch.equal(get_task("classify", ["a", "b"]).unflip(plain[:, :2]), plain[:, :2])  # no counterpart: kept


def _shifted(frame: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """frame (C, H, W) with its content moved by (dy, dx), zeros coming in."""
    padded = torch.nn.functional.pad(frame, (1, 1, 1, 1))
    h, w = frame.shape[-2:]
    return padded[:, 1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w]


# -- models -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["frame-cnn", "two-stream", "c3d"])
def test_video_models_map_clips_to_logits(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, (6, 3, 20, 20), 5)
    assert model(torch.rand(2, 6, 3, 20, 20)).shape == (2, 5)


def test_two_stream_fuses_a_weighted_mean_of_its_streams_probabilities() -> None:
    torch.manual_seed(0)
    model = build_model("two-stream", (5, 1, 16, 16), 4).eval()
    x = torch.rand(3, 5, 1, 16, 16)
    with torch.no_grad():
        appearance, motion = model.net.streams(model.normalize(x))
        assert torch.allclose(model(x).softmax(1), (appearance.softmax(1) + motion.softmax(1)) / 2, atol=1e-6)  # the paper's mean
        model.net.gate.fill_(math.log(3))  # alpha = sigmoid(log 3) = 3/4
        fused = model(x).softmax(1)
    assert torch.allclose(fused, 0.75 * appearance.softmax(1) + 0.25 * motion.softmax(1), atol=1e-6)
    y = torch.tensor([0, 1, 2])
    expected = {"appearance_acc": (appearance.argmax(1) == y).float().mean().item(),
                "motion_acc": (motion.argmax(1) == y).float().mean().item()}
    assert stream_accuracies(model, x, y) == pytest.approx(expected)


def test_images_and_clips_go_to_their_own_models() -> None:
    with pytest.raises(CnnlabError, match=r"^c3d takes clips \(TxCxHxW\), not input 1x28x28;"):
        build_model("c3d", (1, 28, 28), 10)
    with pytest.raises(CnnlabError, match=r"^lenet5 takes images \(CxHxW\), not input 16x1x32x32;"):
        build_model("lenet5", (16, 1, 32, 32), 10)


def test_summary_counts_torchvision_video_models(cli) -> None:
    r = cli("summary", "r2plus1d_18", "--input", "16x3x112x112", "--classes", "400", "--json")
    assert r.code == 0, r.err
    s = json.loads(r.out)
    assert s["params"] == 31_505_325 and s["input_shape"] == [16, 3, 112, 112] and s["flops"] > 10**10


# -- videofolder ------------------------------------------------------------------------------
def test_videofolder_reads_mp4_and_gif_as_clips(videos: Path) -> None:
    data = load_data(f"videofolder:{videos}")
    assert data.classes == ["left", "right"] and data.task == "video"
    assert data.input_shape == (16, 3, 32, 32)
    assert (len(data.train), len(data.val), len(data.test)) == (8, 2, 2)
    x = torch.cat([data.train.x, data.val.x, data.test.x])
    assert 0 <= x.min() and x.max() <= 1
    # the bar moves: the first and the last frame of every clip differ; yellow, so the colour came through
    assert ((x[:, 0] - x[:, -1]).abs().amax((1, 2, 3)) > 0.5).all()
    assert (x[:, :, 0].amax((1, 2, 3)) > x[:, :, 2].amax((1, 2, 3)) + 0.3).all()  # red over blue, through the codec's blur


def test_corrupt_and_empty_videos_are_named(videos: Path, tmp_path: Path) -> None:
    root = tmp_path / "videos"
    for name in ("left", "right"):
        for src in (videos / name).iterdir():
            (root / name).mkdir(parents=True, exist_ok=True)
            (root / name / src.name).write_bytes(src.read_bytes())
    (root / "left" / "broken.mp4").write_bytes(b"not a video" * 20)
    (root / "right" / "empty.avi").write_bytes(b"")
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable video\(s\) in .*: left/broken.mp4, right/empty.avi"):
        data = load_data(f"videofolder:{root}")
    assert data.meta["skipped"] == "left/broken.mp4, right/empty.avi" and len(data.train) == 8
    with pytest.raises(CnnlabError, match=r"^cannot read video .*left/broken\.mp4: .*\.$") as e:
        load_data(f"videofolder:{root}", on_corrupt="error")
    assert "\n" not in str(e.value)


def test_cli_answers_what_clips_cannot_do_in_one_sentence(cli, tmp_path: Path, videos: Path) -> None:
    """A corrupt video to predict, image analyses of a model of clips, a memory layout for images."""
    run = tmp_path / "run"
    cnnlab.train(model="frame-cnn", data=f"videofolder:{videos}", epochs=1, batch_size=4, out=run, quiet=True)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 64)
    clip = videos / "left" / "left0.mp4"
    for args, sentence in [
        (("predict", run, bad), f"cannot read video {bad}: "),
        (("explain", run, clip), f"explain (attribution maps over an image) applies to models of images, and run {run.name} "
                                 "takes clips of 16x3x32x32 (frames first)."),
        (("show", run, "--filters"), "applies to models of images"),
        (("train", "--model", "c3d", "--data", f"videofolder:{videos}", "--channels-last", "--out", tmp_path / "cl"),
         "--channels-last lays out images (N, C, H, W)"),
    ]:
        r = cli(*args)
        assert r.code == 1 and "Traceback" not in r.err and sentence in r.err, (args, r.err)
        assert len(r.err.strip().splitlines()) == 1


# -- the video task through the spine ------------------------------------------------------
@pytest.mark.slow
def test_train_evaluate_predict_on_video_files(cli, tmp_path: Path, videos: Path) -> None:
    run = tmp_path / "run"
    r = cli("train", "--model", "two-stream", "--data", f"videofolder:{videos}", "--epochs", "3", "--batch-size", "4",
            "--optimizer", "adamw", "--lr", "0.003", "--out", run, "--quiet", "--json")
    assert r.code == 0, r.err
    trained = json.loads(r.out)
    assert trained["event"] == "test" and 0 <= trained["test_acc"] <= 1
    assert {"test_appearance_acc", "test_motion_acc"} <= set(trained)  # each stream measured on its own
    assert Run.load(run).provenance["task"] == "video"

    r = cli("evaluate", run, "--json")
    assert r.code == 0, r.err
    ev = json.loads(r.out)
    assert ev["n"] == 2 and len(ev["confusion"]) == 2 and sum(map(sum, ev["confusion"])) == 2
    assert ev["accuracy"] == pytest.approx(trained["test_acc"])
    assert all(Path(ev["files"][k]).is_file() for k in ("evaluation", "confusion", "misclassified"))
    r = cli("report", run)
    assert r.code == 0, r.err
    html = (run / "report.html").read_text()
    assert f"accuracy <b>{ev['accuracy']:.4f}</b>" in html and "Misclassified examples" in html  # a classifier's section

    out = tmp_path / "pictures"
    r = cli("predict", run, videos / "left" / "left0.mp4", videos / "right" / "right5.gif", "--out", out, "--json")
    assert r.code == 0, r.err
    found = json.loads(r.out)["predictions"]
    assert [Path(p["image"]).name for p in found] == ["left0.mp4", "right5.gif"]
    for p in found:
        assert [t["class"] for t in p["top"]] in (["left", "right"], ["right", "left"])
        assert math.isclose(sum(t["probability"] for t in p["top"]), 1, abs_tol=1e-5)
        with Image.open(p["picture"]) as gif:  # the clip played back, scaled up, its label on every frame
            # 16 frames sampled from the file's 8: Pillow merges each repeated pair into one longer frame
            assert gif.format == "GIF" and gif.n_frames == 8 and gif.height >= 128
    assert Path(found[0]["picture"]) == out / "left0.gif"


@pytest.mark.slow
def test_resume_after_a_kill_ends_with_the_same_weights(tmp_path: Path, videos: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A run stopped right after a mid-epoch checkpoint (what a SIGKILL leaves, without the
    race) and resumed ends as the run that never stopped: clip batches and crops restored."""
    args = dict(model="c3d", data=f"videofolder:{videos}", epochs=3, batch_size=3, augment="crop", seed=7, quiet=True)
    reference = cnnlab.train(out=tmp_path / "reference", **args)

    real = callbacks.checkpoint

    def checkpoint_then_die(run, parts, pos) -> None:
        real(run, parts, pos)
        if pos.epoch == 1 and pos.batch == 1:
            raise SystemExit("killed")

    monkeypatch.setattr(callbacks, "checkpoint", checkpoint_then_die)
    with pytest.raises(SystemExit):
        cnnlab.train(out=tmp_path / "run", checkpoint_every=1, **args)
    monkeypatch.setattr(callbacks, "checkpoint", real)
    resumed = cnnlab.resume(tmp_path / "run", quiet=True)

    a, b = load_file(str(reference.path / WEIGHTS)), load_file(str(resumed.path / WEIGHTS))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.test_result()["test_loss"] == reference.test_result()["test_loss"]


@pytest.mark.slow
def test_a_tiny_training_learns_the_motion(tmp_path: Path) -> None:
    """c3d on 96 left/right clips of 16 px for 4 epochs: the held-out 32 clips are mostly right,
    which no single frame could do (the anchor frames are alike in both classes)."""
    x, y = clips(128, seed=9, side=16, labels=torch.arange(128) % 2)
    data = Dataset("left-right", ["left", "right"], Split(x[:96], y[:96]), Split(x[:0], y[:0]), Split(x[96:], y[96:]),
                   task="video")
    run = cnnlab.train(model="c3d", data=data, epochs=4, batch_size=16, optimizer="adamw", lr=0.003, quiet=True,
                       out=tmp_path / "run")
    assert run.test_result()["test_acc"] >= 0.8
