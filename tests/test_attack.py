"""cnnlab.attack: FGSM and PGD keep their promises (budget, pixel range, strength), agree with
torchattacks, drive `cnnlab attack`, and adversarial training makes a model more robust."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from cnnlab.attack import fgsm, pgd
from cnnlab.attack.robustness import robust_accuracy
from cnnlab.errors import CnnlabError
from cnnlab.run import Run


@pytest.fixture(scope="module")
def batch(trained_run: Run, digits):
    """100 test digits and the digits model in eval mode."""
    return trained_run.model.eval(), digits.test.x[:100], digits.test.y[:100]


@pytest.fixture
def run_copy(trained_run: Run, tmp_path: Path) -> Path:
    """A private copy of the session's run, so files written by `cnnlab attack` stay in this test."""
    return Path(shutil.copytree(trained_run.path, tmp_path / "lenet5-digits"))


def accuracy(model, x, y) -> float:  # noqa: ANN001
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


# -- the attacks themselves -------------------------------------------------------------------

@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_linf_attacks_stay_in_budget_and_pixel_range(batch, attack: str) -> None:
    model, x, y = batch
    x_adv = fgsm(model, x, y, 0.1) if attack == "fgsm" else pgd(model, x, y, 0.1, steps=5)
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv != x).float().mean() > 0.3  # it did move most pixels


def test_pgd_l2_stays_in_the_ball(batch) -> None:
    model, x, y = batch
    x_adv = pgd(model, x, y, 1.5, steps=10, norm="l2")
    norms = (x_adv - x).flatten(1).norm(dim=1)
    assert norms.max() <= 1.5 + 1e-4 and norms.mean() > 1.0
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert accuracy(model, x_adv, y) < accuracy(model, x, y) - 0.3


def test_pgd_is_stronger_than_fgsm_and_grows_with_eps(batch) -> None:
    model, x, y = batch
    clean = accuracy(model, x, y)
    torch.manual_seed(0)
    small, large = (accuracy(model, pgd(model, x, y, e, steps=10), y) for e in (0.03, 0.1))
    one_step = accuracy(model, fgsm(model, x, y, 0.1), y)
    assert clean > 0.9
    assert clean > small > large
    assert large <= one_step and large < 0.25


def test_targeted_pgd_sends_images_to_the_target(batch) -> None:
    model, x, y = batch
    target = torch.full_like(y, 3)
    x_adv = pgd(model, x, target, 0.2, steps=10, targeted=True)
    with torch.no_grad():
        hit = (model(x_adv).argmax(1) == 3).float().mean().item()
    assert hit > 0.8
    untargeted = pgd(model, x, target, 0.2, steps=10)  # pushing away from 3 instead
    with torch.no_grad():
        assert (model(untargeted).argmax(1) == 3).float().mean().item() < 0.05


def test_attacks_leave_the_model_alone(trained_run: Run, digits) -> None:
    model = trained_run.model.train()  # the attack must not switch the mode nor touch .grad
    try:
        model.zero_grad(set_to_none=True)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        pgd(model, digits.test.x[:16], digits.test.y[:16], 0.1, steps=3)
        assert model.training
        assert all(p.grad is None for p in model.parameters())
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    finally:
        model.eval()


def test_pgd_works_on_any_module() -> None:
    # a plain module, not from cnnlab's registry, and an RGB batch
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4)).eval()
    x, y = torch.rand(10, 3, 8, 8), torch.randint(0, 4, (10,))
    x_adv = pgd(model, x, y, 0.05, steps=3)
    assert x_adv.shape == x.shape and (x_adv - x).abs().max() <= 0.05 + 1e-6


def test_agrees_with_torchattacks_within_one_point(batch) -> None:
    from cnnlab.attack.reference import reference_pgd

    pytest.importorskip("torchattacks")
    model, x, y = batch
    ours = {}
    for eps in (0.05, 0.1):
        torch.manual_seed(7)
        ours[eps] = accuracy(model, pgd(model, x, y, eps, steps=10), y)
        torch.manual_seed(7)
        theirs = accuracy(model, reference_pgd(model, x, y, eps, steps=10), y)
        assert abs(ours[eps] - theirs) <= 0.01, (eps, ours[eps], theirs)
    assert ours[0.1] < ours[0.05]
    torch.manual_seed(8)  # another random start lands within a few images
    assert abs(accuracy(model, pgd(model, x, y, 0.05, steps=10), y) - ours[0.05]) <= 0.05


def test_robust_accuracy_starts_with_clean(batch) -> None:
    model, x, y = batch
    result = robust_accuracy(model, x, y, "fgsm", [0.1, 0.02])
    assert (result.attack, result.steps, result.n, result.label) == ("fgsm", None, 100, "fgsm")
    points = result.points
    assert [p.eps for p in points] == [0.0, 0.02, 0.1]
    assert points[0].accuracy == pytest.approx(accuracy(model, x, y))
    assert points[0].accuracy > points[1].accuracy > points[2].accuracy


# -- mistakes get one sentence ----------------------------------------------------------------

@pytest.mark.parametrize("eps", [-0.1, 1.5, float("nan")])
def test_eps_outside_the_pixel_range_is_refused(batch, eps: float) -> None:
    model, x, y = batch
    with pytest.raises(CnnlabError, match="eps"):
        pgd(model, x, y, eps)


def test_images_outside_zero_one_are_refused(batch) -> None:
    model, x, y = batch
    with pytest.raises(CnnlabError, match=r"pixels in \[0, 1\]"):
        fgsm(model, x * 255, y, 0.1)


def test_model_that_does_not_take_the_images(batch) -> None:
    model, x, y = batch
    with pytest.raises(CnnlabError, match="cannot take images of shape 3x28x28"):
        robust_accuracy(model, x.repeat(1, 3, 1, 1), y, "pgd", [0.1])


def test_cli_errors_are_one_sentence(cli, run_copy: Path, tmp_path: Path) -> None:
    r = cli("attack", run_copy, "--eps", "0.05,2")
    assert r.code == 1 and "eps 2.0 is outside [0, 1]" in r.err and "Traceback" not in r.err
    r = cli("attack", run_copy, "--attack", "cw")
    assert r.code == 1 and "unknown attack 'cw'" in r.err and "fgsm, pgd, autoattack" in r.err
    r = cli("attack", run_copy, "--eps", "a,b")
    assert r.code == 1 and "--eps must be numbers" in r.err
    for k in range(3):  # RGB images: they do not fit a 1x28x28 run
        (tmp_path / "pets" / f"class{k}").mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (28, 28), (80 * k, 20 * i, 200)).save(tmp_path / "pets" / f"class{k}" / f"{i}.png")
    r = cli("attack", run_copy, "--data", f"imagefolder:{tmp_path / 'pets'}")
    assert r.code == 1 and "has images of shape 3x28x28 but run lenet5-digits expects 1x28x28" in r.err
    assert r.err.count("\n") == 1


def test_autoattack_without_torchattacks_names_the_extra(cli, run_copy: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torchattacks", None)  # `import torchattacks` now fails
    r = cli("attack", run_copy, "--attack", "autoattack", "--eps", "0.1")
    assert r.code == 1 and "pip install -e '.[reference]'" in r.err


# -- the command and the report ---------------------------------------------------------------

def test_cli_attack_json_files_and_report(cli, run_copy: Path) -> None:
    r = cli("attack", run_copy, "--attack", "pgd", "--eps", "0.05,0.1", "--steps", "5", "--n", "100", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert [p["eps"] for p in doc["points"]] == [0.0, 0.05, 0.1] and doc["n"] == 100
    accs = [p["accuracy"] for p in doc["points"]]
    assert accs[0] > 0.9 and accs[0] > accs[1] > accs[2]
    for name in ("curve", "examples"):
        png = Path(doc["files"][name])
        assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 5000
    assert json.loads((run_copy / "attack" / "pgd-linf" / "robustness.json").read_text())["points"] == doc["points"]

    r = cli("attack", run_copy, "--attack", "fgsm", "--eps", "0.1", "--n", "50")
    assert r.code == 0 and "fgsm (linf) on 50 test images of digits" in r.out and "0 (clean)" in r.out

    r = cli("report", run_copy)
    html = (run_copy / "report.html").read_text()
    assert "<h2>Robustness</h2>" in html and "pgd-5 (linf) on 100 test images" in html and "fgsm (linf)" in html
    assert html.count('alt="accuracy against eps"') == 2


# -- adversarial training ---------------------------------------------------------------------

@pytest.mark.parametrize("flags, message", [
    (["--adversarial", "pgd", "--eps", "1.5"], "eps 1.5 is outside [0, 1]"),
    (["--adversarial", "pgd"], "needs --eps above 0"),
    (["--adversarial", "trades", "--eps", "0.1"], "adversarial must be none, pgd or fgsm-rs"),
    (["--adversarial", "pgd", "--eps", "0.1", "--adv-steps", "0"], "adv steps must be at least 1"),
])
def test_adversarial_training_flags_are_checked(cli, tmp_path: Path, flags: list[str], message: str) -> None:
    r = cli("train", "--data", "digits", "--epochs", "1", "--out", tmp_path / "r", *flags)
    assert r.code == 1 and message in r.err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fgsm-rs", "pgd"])
def test_adversarial_training_makes_the_model_more_robust(trained_run: Run, digits, tmp_path: Path, method: str) -> None:
    import cnnlab

    robust = cnnlab.train(model="lenet5", data="digits", epochs=4, batch_size=32, adversarial=method, eps=0.1,
                          adv_steps=3, out=tmp_path / method, quiet=True)
    assert robust.config.adversarial == method
    x, y = digits.test.x, digits.test.y
    standard = robust_accuracy(trained_run.model, x, y, "pgd", [0.1], steps=10).points[1].accuracy
    adversarial = robust_accuracy(robust.model, x, y, "pgd", [0.1], steps=10).points[1].accuracy
    assert adversarial > standard + 0.3, (standard, adversarial)
