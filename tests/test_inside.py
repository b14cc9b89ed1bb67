"""MLP vs CNN (the permutation test) and `cnnlab show` (filters, feature maps), on real runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.experiments.mlp_vs_cnn import fixed_permutation, parameter_comparison, permute_pixels, permuted_dataset
from cnnlab.run import Run


def test_the_permutation_is_fixed_and_loses_nothing(digits) -> None:
    perm = fixed_permutation(28 * 28, seed=0)
    assert torch.equal(perm, fixed_permutation(28 * 28, seed=0))  # a pure function of the seed
    assert torch.equal(perm.sort().values, torch.arange(28 * 28))  # a bijection
    x = digits.test.x[:5]
    shuffled = permute_pixels(x, perm)
    assert not torch.equal(shuffled, x)
    assert torch.equal(permute_pixels(shuffled, perm.argsort()), x)  # undone by the inverse
    # every image is shuffled the same way: pixel k of each comes from position perm[k]
    assert torch.equal(shuffled.flatten(2)[:, 0, 0], x.flatten(2)[:, 0, perm[0]])
    data = permuted_dataset(digits, perm)
    assert torch.equal(data.train.x, permute_pixels(digits.train.x, perm))
    assert torch.equal(data.test.y, digits.test.y) and torch.equal(data.val.x, permute_pixels(digits.val.x, perm))
    assert "permuted" in data.meta["pixels"]


def test_an_mlp_is_blind_to_the_permutation(digits) -> None:
    """Why the MLP's accuracy does not move: shuffling the first layer's columns the same way
    gives exactly the same outputs on shuffled images, so the shuffled task is as learnable."""
    from cnnlab.models import build_model

    torch.manual_seed(0)
    mlp = build_model("mlp", (1, 28, 28), 10)
    perm = fixed_permutation(28 * 28, seed=3)
    shuffled = build_model("mlp", (1, 28, 28), 10)
    shuffled.load_state_dict(mlp.state_dict())
    first = shuffled.net[1]
    with torch.no_grad():
        first.weight.copy_(first.weight[:, perm])
    x = digits.test.x[:16]
    assert torch.allclose(mlp(x), shuffled(permute_pixels(x, perm)), atol=1e-5)
    # a conv layer has no such rewiring: its output on shuffled images is not a shuffle of its output
    conv = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False)
    assert not torch.allclose(permute_pixels(conv(x), perm), conv(permute_pixels(x, perm)), atol=1e-3)


def test_parameter_comparison_formulas() -> None:
    mlp, cnn = parameter_comparison((1, 28, 28), 10)
    assert mlp["params"] == 784 * 256 + 256 == 200_960 and mlp["total"] == 269_322
    assert cnn["params"] == 5 * 5 * 1 * 6 + 6 == 156 and cnn["total"] == 61_706
    mlp, cnn = parameter_comparison((3, 32, 32), 10)
    assert mlp["params"] == 3 * 32 * 32 * 256 + 256 and cnn["params"] == 5 * 5 * 3 * 6 + 6
    assert mlp["formula"] == "inputs x hidden + hidden = 3*32*32 x 256 + 256"


@pytest.mark.slow
def test_mlp_vs_cnn_experiment_on_digits(cli, tmp_path: Path) -> None:
    out = tmp_path / "mvc"
    r = cli("experiment", "mlp-vs-cnn", "--data", "digits", "--epochs", "1", "--out", out, "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert set(doc["runs"]) == {"mlp", "mlp-permuted", "lenet5", "lenet5-permuted"}
    assert doc == json.loads((out / "experiment.json").read_text())
    for model in ("mlp", "lenet5"):
        a = doc["accuracy"][model]
        run = Run.load(out / f"{model}-permuted")
        assert a["permuted"] == run.metrics()[-1]["test_acc"]
        assert a["change_points"] == pytest.approx(100 * (a["permuted"] - a["original"]))
    assert [p["params"] for p in doc["parameters"]] == [200_960, 156]
    for name in ("permutation", "accuracy"):
        assert Image.open(doc["files"][name]).format == "PNG"
    html = (out / "lenet5-permuted" / "report.html").read_text()
    assert "MLP vs CNN on digits" in html and "200,960" in html and html.count("data:image/png;base64,") >= 3
    # the same folder is not overwritten by accident
    r = cli("experiment", "mlp-vs-cnn", "--data", "digits", "--epochs", "1", "--out", out)
    assert r.code == 1 and "already holds an experiment; choose another --out or add --overwrite" in r.err


def _png(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray((pixels * 255).round().astype(np.uint8)).save(path)
    return path


def test_show_filters_and_feature_maps(cli, trained_run: Run, digits, tmp_path: Path) -> None:
    img = _png(tmp_path / "seven.png", digits.test.x[0, 0].numpy())
    r = cli("show", trained_run.path, "--filters", "--feature-maps", img, "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["filters"]["layer"] == "net.features.conv1" and doc["filters"]["shape"] == [6, 1, 5, 5]
    w = trained_run.model.net.features.conv1.weight
    assert doc["filters"]["min"] == pytest.approx(w.min().item()) and doc["filters"]["max"] == pytest.approx(w.max().item())
    assert Image.open(doc["filters"]["file"]).format == "PNG"
    maps = doc["feature_maps"][str(img)]
    assert [(m["layer"], m["shape"]) for m in maps] == [("net.features.conv1", [6, 28, 28]), ("net.features.conv2", [16, 10, 10])]
    for m in maps:
        assert Path(m["file"]).is_file() and Path(m["file"]).parent.name == "feature-maps-seven"
    html = Path(doc["report"]).read_text()
    assert "Inside the network" in html and "First-layer filters" in html and "Feature maps of seven" in html


def test_feature_maps_are_the_conv_outputs(trained_run: Run, digits) -> None:
    """The hooks record each conv's own output, before the in-place ReLU can change it."""
    from cnnlab.inside.pictures import feature_maps
    from cnnlab.models import layers_of

    x = digits.test.x[3]
    maps = feature_maps(trained_run.model, x)
    features = trained_run.model.net.features
    with torch.no_grad():
        expected = features.conv1(trained_run.model.normalize(x[None]))[0]
    assert torch.allclose(maps["net.features.conv1"], expected, atol=1e-6)
    assert (maps["net.features.conv1"] < 0).any()  # negatives: recorded before the ReLU
    assert all(not m._forward_hooks for _, m in layers_of(trained_run.model))  # hooks removed


def test_show_errors_are_one_sentence(cli, trained_run: Run, tmp_path: Path) -> None:
    r = cli("show", trained_run.path)
    assert r.code == 1 and "say what to show" in r.err
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    r = cli("show", trained_run.path, "--feature-maps", bad)
    assert r.code == 1 and "cannot read image" in r.err and not (trained_run.path / "inside" / "feature-maps-bad").exists()
    import cnnlab

    mlp = cnnlab.train(model="logistic", data="digits", epochs=1, out=tmp_path / "logistic", quiet=True)
    r = cli("show", mlp.path, "--filters")
    assert r.code == 1 and "has no convolution layer" in r.err
    assert len(r.err.strip().splitlines()) == 1
