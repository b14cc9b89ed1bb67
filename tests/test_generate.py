"""Generation: a tiny DCGAN trained for real on digits, its marked PNGs read back, the measures
on hand cases, an exact resume after SIGKILL, and the quiz played in Chromium."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.generate.measures import frechet_distance, precision_recall
from cnnlab.report.marks import check_mark
from cnnlab.run import CHECKPOINT, WEIGHTS, Run
from conftest import CHROMIUM, CHROMIUM_ARGS, cnnlab_process, needs_chromium, serving

GAN = ["--data", "digits", "--epochs", "2", "--batch-size", "64", "--optimizer", "adam", "--lr", "2e-4",
       "--schedule", "none", "--weight-decay", "0", "--seed", "3"]


def _train(model: str, out: Path, epochs: int = 2) -> Run:
    """The model's own training values (Adam at 2e-4, constant, batches of 64), none given here."""
    return cnnlab.train(model=model, data="digits", epochs=epochs, seed=3, out=out, quiet=True)


@pytest.fixture(scope="module")
def gan(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _train("dcgan", tmp_path_factory.mktemp("gan") / "dcgan-digits")


@pytest.fixture(scope="module")
def samples(gan: Run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cnnlab.generate.sample import write_samples

    out = tmp_path_factory.mktemp("samples")
    write_samples(gan, out, n=12, seed=5, interpolate=True)
    return out


def test_a_gan_trains_in_turn_and_gets_closer_to_the_data(gan: Run) -> None:
    epochs = [m for m in gan.metrics() if m.get("event") == "epoch"]
    assert [m["epoch"] for m in epochs] == [1, 2]
    for m in epochs:  # both nets' numbers: D's loss, D(x) and D(G(z)) as probabilities
        assert m["train_d_loss"] > 0 and 0 < m["train_d_fake"] < m["train_d_real"] < 1
    assert epochs[1]["val_swd"] < epochs[0]["val_swd"]  # the generated pixels moved toward the real ones
    grids = sorted((gan.path / "generate" / "epochs").glob("epoch-*.png"))
    assert [g.name for g in grids] == ["epoch-001.png", "epoch-002.png"]
    assert check_mark(grids[-1]).intact


def test_only_the_generator_is_stepped_by_the_loop(gan: Run) -> None:
    state = torch.load(gan.path / CHECKPOINT, weights_only=True)
    generator = sum(p.numel() for p in gan.model.net.generator.parameters())
    discriminator = sum(p.numel() for p in gan.model.net.discriminator.parameters())
    assert sum(s["exp_avg"].numel() for s in state["optimizer"]["state"].values()) == generator
    assert state["optimizer"]["param_groups"][0]["betas"] == (0.5, 0.999)  # Radford et al.
    assert (gan.config.optimizer, gan.config.lr, gan.config.schedule, gan.config.batch_size) == ("adam", 2e-4, "none", 64)
    own = state["own_training"]
    assert sum(s["exp_avg"].numel() for s in own["optimizer"]["state"].values()) == discriminator


def test_marks_accept_an_untouched_png_and_reject_an_altered_or_unmarked_one(samples: Path, gan: Run, cli,
                                                                            tmp_path: Path) -> None:
    single = samples / "images" / "00003.png"
    check = check_mark(single)
    assert check.intact and check.mark["run"] == gan.name and check.mark["seed"] == 5 and check.mark["latent_index"] == 3
    assert check.mark["weights_sha256"] == gan.provenance["weights"][WEIGHTS]
    r = cli("provenance", single, samples / "grid.png", samples / "interpolation.png")
    assert r.code == 0 and r.out.count("ok: ") == 3 and "not ok" not in r.out

    image = Image.open(single)
    image.load()
    pixels = image.load()
    pixels[5, 5] = (pixels[5, 5] + 1) % 256  # one pixel, one grey level
    altered = tmp_path / "altered.png"
    image.save(altered, pnginfo=_same_text(image))
    unmarked = tmp_path / "unmarked.png"
    Image.open(single).save(unmarked)  # a plain re-encode drops the text chunk
    r = cli("provenance", altered, unmarked)
    assert r.code == 1
    assert "altered.png claims run dcgan-digits but its pixels were altered" in r.out
    assert "unmarked.png carries no cnnlab mark" in r.out
    r = cli("provenance", tmp_path / "missing.png")
    assert r.code == 1 and "missing.png does not exist." in r.err


def _same_text(image: Image.Image):  # noqa: ANN202
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for k, v in image.text.items():
        info.add_text(k, v)
    return info


def test_the_same_latent_vector_draws_the_same_image(samples: Path, gan: Run, tmp_path: Path) -> None:
    from cnnlab.generate.sample import write_samples

    write_samples(gan, tmp_path, n=4, seed=5)
    assert (tmp_path / "images" / "00003.png").read_bytes() == (samples / "images" / "00003.png").read_bytes()
    strips = sorted(samples.glob("interpolation-*.png"))
    assert len(strips) == 8 and all(check_mark(s).mark["latent_index"] == [2 * i, 2 * i + 1] for i, s in enumerate(strips))


def test_generate_command_writes_images_and_the_training_gif(gan: Run, cli, tmp_path: Path) -> None:
    r = cli("generate", gan.path, "-n", "5", "--seed", "1", "--out", tmp_path / "out", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["files"]["count"] == 5 and len(list((tmp_path / "out" / "images").glob("*.png"))) == 5
    gif = Image.open(doc["files"]["training_gif"])
    assert gif.format == "GIF" and gif.n_frames == 2
    r = cli("generate", gan.path, "--class", "3", "--out", tmp_path / "c")
    assert r.code == 1 and "unconditional generator" in r.err


def test_frechet_distance_on_hand_cases() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(500, 4, generator=g, dtype=torch.float64)
    assert abs(frechet_distance(a, a.clone())) < 1e-6  # identical sets
    shift = torch.tensor([3.0, 0.0, -4.0, 0.0], dtype=torch.float64)
    assert frechet_distance(a, a + shift) == pytest.approx(25.0, rel=1e-6)  # same covariance: |mean difference|^2


def test_precision_and_recall_on_hand_cases() -> None:
    a = torch.randn(200, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert precision_recall(a, a.clone()) == (1.0, 1.0)
    assert precision_recall(a, a + 100) == (0.0, 0.0)  # far apart: no generated image is like a real one
    p, r = precision_recall(a, a[:1].repeat(200, 1) + 1e-3 * a)  # mode collapse: all alike, near one real image
    assert p == 1.0 and r < 0.1


def test_measures_in_a_classifier_run_and_the_detector(gan: Run, trained_run: Run) -> None:
    from cnnlab.generate.detect import train_detector
    from cnnlab.generate.measures import measure

    m = measure(gan, trained_run, n=100, seed=0)
    assert m["classifier_fid"] > m["classifier_fid_floor"] > 0  # 2 epochs on 1,257 digits: far from real
    assert sum(m["class_shares"].values()) == pytest.approx(1.0) and m["conditional_accuracy"] is None
    assert gan.results("generate/measures")["fid_over_floor"] == pytest.approx(m["fid_over_floor"])
    d = train_detector(gan, n=100, epochs=1)
    assert 0.0 <= d["accuracy"] <= 1.0 and d["test_images"] == 100
    assert gan.results("generate/detector")["accuracy"] == d["accuracy"]


def test_conditional_gan_draws_the_class_asked_for(tmp_path: Path, cli) -> None:
    run = _train("cdcgan", tmp_path / "cdcgan", epochs=1)
    assert run.model(torch.rand(2, 1, 28, 28)).shape == (2, 10)  # the projection: a score per class
    r = cli("generate", run.path, "-n", "3", "--class", "7", "--out", tmp_path / "sevens", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["class"] == "7"
    r = cli("generate", run.path, "--class", "cat", "--out", tmp_path / "cats")
    assert r.code == 1 and "class 'cat' is not one of" in r.err


def test_a_gan_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    with pytest.raises(CnnlabError, match="a GAN trains in one process without DP-SGD"):
        cnnlab.train(model="dcgan", data="digits", epochs=1, dp=True, out=tmp_path / "dp", quiet=True)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bitwise_equal(tmp_path: Path) -> None:
    """Both optimizers, the latent generator and every RNG come back: the resumed run's weights,
    metrics and grids are those of the run never stopped."""
    reference = tmp_path / "reference"
    p = cnnlab_process("train", "--model", "dcgan", *GAN, "--out", reference, "--quiet")
    assert p.wait(timeout=600) == 0

    out = tmp_path / "killed"
    p = cnnlab_process("train", "--model", "dcgan", *GAN, "--checkpoint-every", "7", "--out", out, "--quiet")
    deadline = time.monotonic() + 600
    while _position(out) < (1, 1):  # a checkpoint inside epoch 2 (20 steps an epoch)
        assert time.monotonic() < deadline and p.poll() is None, "the training never got there"
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL)
    assert p.wait(timeout=30) == -signal.SIGKILL
    assert cnnlab_process("train", "--resume", out, "--quiet").wait(timeout=600) == 0

    a, b = load_file(str(reference / WEIGHTS)), load_file(str(out / WEIGHTS))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    drop = ("images_per_s", "epoch_seconds", "train_seconds")
    strip = lambda run: [{k: v for k, v in m.items() if k not in drop} for m in Run.load(run).metrics()]  # noqa: E731
    assert strip(reference) == strip(out)
    grid = Path("generate/epochs/epoch-002.png")
    assert (reference / grid).read_bytes() != b"" and _pixels(reference / grid) == _pixels(out / grid)


def _position(run_dir: Path) -> tuple[int, int]:
    try:
        position = torch.load(run_dir / CHECKPOINT, weights_only=True)["position"]
    except (FileNotFoundError, RuntimeError, EOFError):
        return -1, -1
    return position["epoch"], position["batch"]


def _pixels(path: Path) -> bytes:
    return Image.open(path).tobytes()


@pytest.fixture(scope="module")
def quiz_server(gan: Run):
    from cnnlab.serve import create_app

    with serving(create_app(gan.path)) as url:
        yield url


def test_quiz_api_keeps_score(quiz_server: str) -> None:
    import httpx

    start = httpx.post(f"{quiz_server}/api/quiz", timeout=60).json()
    assert start["rounds"] == 10 and start["pair"]["left"].startswith("data:image/png;base64,")
    answered = []
    for i in range(10):
        r = httpx.post(f"{quiz_server}/api/quiz/{start['quiz']}/answer", json={"pick": "left"}, timeout=60).json()
        answered.append(r)
        assert r["answered"] == i + 1 and (r["next"] is None) == (i == 9)
    assert answered[-1]["score"] == sum(a["real"] == "left" for a in answered)
    over = httpx.post(f"{quiz_server}/api/quiz/{start['quiz']}/answer", json={"pick": "left"}, timeout=60)
    assert over.status_code == 422 and "this quiz is over" in over.json()["error"]
    assert httpx.post(f"{quiz_server}/api/quiz/nope/answer", json={"pick": "up"}, timeout=60).status_code == 422


@needs_chromium
def test_quiz_page_plays_a_round_in_chromium(quiz_server: str, gan: Run) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{quiz_server}/quiz")
            page.wait_for_function("document.getElementById('left').src.startsWith('data:image/png')", timeout=60_000)
            assert page.inner_text("#round") == "Round 1 of 10"
            page.click("#pick-right")
            page.wait_for_function("document.querySelectorAll('#answers li').length === 1", timeout=60_000)
            verdict = page.inner_text("#verdict")
            assert verdict.startswith(("Right: the real image was on the right.", "Wrong: the real image was on the left."))
            assert page.inner_text("#score") == ("1 / 1" if verdict.startswith("Right") else "0 / 1")
            assert page.inner_text("#round") == "Round 2 of 10"
            machine = page.inner_text("#machine")
            detector = gan.results("generate/detector")
            assert machine == ("not measured" if detector is None else f"{100 * detector['accuracy']:.1f}% held-out accuracy")
        finally:
            browser.close()
