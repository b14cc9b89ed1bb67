"""cnnlab.explain: attributions on any nn.Module, Grad-CAM's hooks and errors, the sanity
checks, and `cnnlab explain` on real image files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.explain import METHODS, attribute
from cnnlab.explain.sanity import FLAG_RHO, auc, deletion_curve, randomized_copy, sanity_checks, spearman
from cnnlab.run import Run


def _png(path: Path, image: torch.Tensor) -> Path:
    from PIL import Image

    Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8)).save(path)
    return path


def _small_cnn() -> nn.Module:
    """Not built by cnnlab, no in-place ReLU: what a user might bring."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128, 5),
    )


@pytest.mark.slow
def test_every_method_explains_a_torchvision_resnet18_it_did_not_build() -> None:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)  # random weights, BatchNorm in train mode
    model.train()
    x = torch.rand(3, 64, 64)
    for method in METHODS:
        a = attribute(model, x, 3, method)
        assert a.shape == x.shape, method
        assert torch.isfinite(a).all() and a.abs().sum() > 0, method
    assert model.training  # put back in the mode it came in


def test_integrated_gradients_are_complete(trained_run: Run, digits) -> None:
    """Sundararajan et al.'s axiom: attributions sum to f(x) - f(baseline), baseline = zeros."""
    x = digits.test.x[:8]
    a = attribute(trained_run.model, x, None, "integrated-gradients")  # the predicted classes
    with torch.no_grad():
        target = trained_run.model(x).argmax(1)
        gap = (trained_run.model(x) - trained_run.model(torch.zeros_like(x))).gather(1, target[:, None])[:, 0]
    # the integral is approximated with 50 points: ~1% error on a ReLU/max-pool network
    assert ((a.sum((1, 2, 3)) - gap).abs() <= 0.03 * gap.abs() + 0.03).all(), (a.sum((1, 2, 3)), gap)


def test_saliency_is_the_absolute_input_gradient(trained_run: Run, digits) -> None:
    x = digits.test.x[:2].clone().requires_grad_()
    trained_run.model(x)[:, 7].sum().backward()
    torch.testing.assert_close(attribute(trained_run.model, digits.test.x[:2], 7, "saliency"), x.grad.abs())


def test_gradcam_matches_captum_and_finds_the_last_conv() -> None:
    from captum.attr import LayerAttribution, LayerGradCam

    model, x, target = _small_cnn().eval(), torch.rand(2, 3, 16, 16), torch.tensor([1, 4])
    ours = attribute(model, x, target, "gradcam")
    cam = LayerGradCam(model, model[2]).attribute(x, target=target, relu_attributions=True)
    ref = LayerAttribution.interpolate(cam, (16, 16), "bilinear")
    assert ours.shape == x.shape
    torch.testing.assert_close(ours[:, :1], ref.detach())
    # another layer by name gives another map
    assert not torch.allclose(attribute(model, x, target, "gradcam", layer="0"), ours)


def test_gradcam_errors_name_the_layer_and_leave_no_hook() -> None:
    class WithSpare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = _small_cnn()
            self.spare = nn.Conv2d(3, 3, 1)  # the last conv defined, never called by forward

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    model = WithSpare()
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(CnnlabError, match="layer 'spare' was not used by the forward pass"):
        attribute(model, x, 0, "gradcam")
    assert attribute(model, x, 0, "gradcam", layer="net.2").shape == x.shape
    with pytest.raises(CnnlabError, match="unknown layer 'conv9'.*known layers: net.0, net.2"):
        attribute(model, x, 0, "gradcam", layer="conv9")
    detached = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 14 * 14, 2))
    detached[0].register_forward_hook(lambda m, i, o: o.detach())
    with pytest.raises(CnnlabError, match="layer '0' gives no gradient"):
        attribute(detached, torch.rand(1, 3, 16, 16), 0, "gradcam")
    assert all(not m._forward_hooks for m in model.modules())


def test_bad_method_and_targets_are_one_sentence() -> None:
    model, x = _small_cnn(), torch.rand(2, 3, 16, 16)
    with pytest.raises(CnnlabError, match="unknown method 'gradcma'; did you mean gradcam"):
        attribute(model, x, 0, "gradcma")
    with pytest.raises(CnnlabError, match="got 3 targets for 2 images"):
        attribute(model, x, torch.tensor([0, 1, 2]), "saliency")


def test_occlusion_sees_only_the_pixels_that_matter() -> None:
    """A 'model' reading the top-left quarter alone: occlusion is zero everywhere else."""
    class TopLeft(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = x[:, :, :8, :8].sum((1, 2, 3))
            return torch.stack([s, -s], 1)

    a = attribute(TopLeft(), torch.ones(1, 1, 28, 28), 0, "occlusion")
    assert a[0, 0, :6, :6].min() > 0 and a[0, 0, 14:, :].abs().max() == 0 and a[0, 0, :, 14:].abs().max() == 0


def test_randomized_copy_keeps_the_normalisation_and_changes_the_rest(trained_run: Run) -> None:
    fresh = randomized_copy(trained_run.model)
    before, after = trained_run.model.state_dict(), fresh.state_dict()
    for k in before:
        same = torch.equal(before[k], after[k])
        assert same == ("normalize" in k.lower() or "mean" in k or "std" in k), k


def test_spearman_and_auc() -> None:
    a = torch.arange(10.0)
    assert spearman(a, a**3) == pytest.approx(1.0) and spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, torch.zeros(10)) == 0.0 and spearman(a, a) >= FLAG_RHO
    assert auc(torch.tensor([1.0, 1.0, 1.0])) == pytest.approx(1.0)
    assert auc(torch.tensor([1.0, 0.0, 0.0])) == pytest.approx(0.25)


def test_deletion_curve_ends_at_the_black_image(trained_run: Run, digits) -> None:
    x = digits.test.x[:4]
    target = trained_run.model(x).argmax(1)
    order = torch.arange(28 * 28).expand(4, -1)
    curve = deletion_curve(trained_run.model, x, target, order, steps=4)
    p = lambda z: trained_run.model(z).softmax(1).gather(1, target[:, None]).mean()  # noqa: E731
    with torch.no_grad():
        assert curve[0] == pytest.approx(float(p(x))) and curve[-1] == pytest.approx(float(p(torch.zeros_like(x))))


def test_sanity_checks_on_a_trained_run(trained_run: Run, digits) -> None:
    s = sanity_checks(trained_run.model, digits.test.x[:16], methods=("saliency", "gradcam"))
    assert [m.method for m in s.methods] == ["saliency", "gradcam"]
    for m in s.methods:
        assert -1 <= m.randomization_rho <= 1 and m.randomization_flagged == (m.randomization_rho >= FLAG_RHO)
        assert len(m.deletion_curve) == 21 and m.deletion_auc < s.random_auc, m  # better than a random order
    assert not s.methods[0].randomization_flagged  # saliency of LeNet-5 changes with its weights


@pytest.fixture
def run_copy(trained_run: Run, tmp_path: Path) -> Path:
    """A copy of the shared run, so this file's explain/ folder stays its own."""
    return Path(shutil.copytree(trained_run.path, tmp_path / "run"))


def test_explain_cli_writes_the_grid_and_arrays(cli, run_copy: Path, tmp_path: Path, digits) -> None:
    files = [_png(tmp_path / f"d{i}.png", digits.test.x[i]) for i in range(2)]
    r = cli("explain", run_copy, *files, "--method", "all", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert [i["image"] for i in doc["images"]] == [str(f) for f in files]
    assert set(doc["images"][0]["methods"]) == set(METHODS)
    grid = Path(doc["files"]["grid"])
    assert grid == run_copy / "explain" / "attributions.png" and grid.read_bytes()[:4] == b"\x89PNG"
    from safetensors.torch import load_file

    arrays = load_file(doc["files"]["arrays"])
    assert arrays["gradcam"].shape == (2, 1, 28, 28)
    r = cli("explain", run_copy, files[0], "--method", "saliency", "--target", "3", "--json")
    assert json.loads(r.out)["images"][0]["explained_class"] == "3"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "lime"], "unknown method 'lime'"),
        (["--layer", "features.conv9"], "unknown layer 'features.conv9'"),
        (["--target", "giraffe"], "--target must be a class of"),
    ],
)
def test_explain_cli_user_errors(cli, run_copy: Path, tmp_path: Path, digits, args: list[str], message: str) -> None:
    r = cli("explain", run_copy, _png(tmp_path / "d.png", digits.test.x[0]), *args)
    assert r.code == 1 and message in r.err and "Traceback" not in r.err
    assert len(r.err.strip().splitlines()) == 1


def test_explain_cli_corrupt_image(cli, run_copy: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    r = cli("explain", run_copy, bad)
    assert r.code == 1 and "broken.png" in r.err and len(r.err.strip().splitlines()) == 1


@pytest.mark.slow  # ~20 s: the sanity checks, then the whole report
def test_sanity_cli_and_report_section(cli, run_copy: Path) -> None:
    r = cli("explain", run_copy, "--sanity", "--n", "8", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["n"] == 8 and [m["method"] for m in doc["methods"]] == list(METHODS)
    assert json.loads((run_copy / "explain" / "sanity.json").read_text())["random_auc"] == doc["random_auc"]
    r = cli("report", run_copy, "--json")
    html = Path(json.loads(r.out)["report"]).read_text()
    assert "<h2>Interpretability</h2>" in html and "deletion AUC" in html
