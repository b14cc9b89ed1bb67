"""TracIn: epoch checkpoints kept by the trainer, the last-layer closed form against
autograd, `cnnlab influence`, and the label-noise experiment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.experiments.label_noise import flip_labels, label_noise, precision_at
from cnnlab.explain.tracin import Checkpoint, influence, kept_checkpoints, last_layer_grads, self_influence
from cnnlab.files import load_weights, read_weights
from cnnlab.run import Run


@pytest.fixture(scope="module")
def kept_run(tmp_path_factory: pytest.TempPathFactory, digits) -> Run:
    """LeNet-5 on digits, 3 epochs, a constant learning rate, every epoch's weights kept."""
    out = tmp_path_factory.mktemp("runs") / "kept"
    return cnnlab.train(model="lenet5", data=digits, epochs=3, batch_size=32, schedule="none", lr=0.03,
                        keep_checkpoints=True, out=out, quiet=True)


def test_keep_checkpoints_saves_each_epoch_with_its_learning_rate(kept_run: Run) -> None:
    checkpoints = kept_checkpoints(kept_run.path)
    assert [c.path.name for c in checkpoints] == ["epoch-001.safetensors", "epoch-002.safetensors", "epoch-003.safetensors"]
    assert [c.epoch for c in checkpoints] == [1, 2, 3]
    assert all(c.lr == pytest.approx(0.03) for c in checkpoints)
    last, _ = read_weights(checkpoints[-1].path)
    final, _ = read_weights(kept_run.path / "model.safetensors")
    assert all(torch.equal(last[k], final[k]) for k in final)  # the last epoch's weights are the model's
    first, _ = read_weights(checkpoints[0].path)
    assert not all(torch.equal(first[k], final[k]) for k in final)


def test_a_run_without_kept_checkpoints_is_one_sentence(trained_run: Run, cli) -> None:
    assert not (trained_run.path / "checkpoints").exists()
    with pytest.raises(CnnlabError, match="train it again with --keep-checkpoints"):
        kept_checkpoints(trained_run.path)
    r = cli("influence", trained_run.path, "--self")
    assert r.code == 1 and "--keep-checkpoints" in r.err and len(r.err.strip().splitlines()) == 1


def test_last_layer_closed_form_equals_autograd(kept_run: Run, digits) -> None:
    """(g . g')(h . h' + 1) is the dot product of the last layer's true loss gradients."""
    model = kept_run.model
    x, y = digits.train.x[:6], digits.train.y[:6]
    fc = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    grads = []
    for i in range(6):
        loss = F.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        gw, gb = torch.autograd.grad(loss, [fc.weight, fc.bias])
        grads.append(torch.cat([gw.flatten(), gb]))
    g = torch.stack(grads)
    factors = last_layer_grads(model, x, y)
    torch.testing.assert_close(factors.dot(factors), g @ g.T, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(factors.self_dot(), (g * g).sum(1), rtol=1e-4, atol=1e-5)


def test_tracin_sums_learning_rate_weighted_checkpoints(kept_run: Run, digits) -> None:
    checkpoints = kept_checkpoints(kept_run.path)
    x, y = digits.train.x[:20], digits.train.y[:20]
    before = {k: v.clone() for k, v in kept_run.model.state_dict().items()}
    scores = influence(kept_run.model, checkpoints, x, y, x[:3], y[:3])
    assert scores.shape == (3, 20)
    torch.testing.assert_close(scores.diagonal(), self_influence(kept_run.model, checkpoints, x[:3], y[:3]))
    # by hand: checkpoint by checkpoint, lr * gradient dot product
    expected = torch.zeros(3, 20, dtype=torch.float64)
    model = Run.load(kept_run.path).model
    for c in checkpoints:
        load_weights(model, read_weights(c.path)[0], "test")
        expected += c.lr * last_layer_grads(model, x[:3], y[:3]).dot(last_layer_grads(model, x, y)).double()
    torch.testing.assert_close(scores, expected)
    # doubling a checkpoint's learning rate doubles its share
    doubled = [Checkpoint(c.path, c.epoch, 2 * c.lr) for c in checkpoints]
    torch.testing.assert_close(influence(kept_run.model, doubled, x, y, x[:3], y[:3]), 2 * scores)
    assert all(torch.equal(before[k], v) for k, v in kept_run.model.state_dict().items())  # weights untouched


def test_flip_labels_is_seeded_and_changes_every_chosen_label() -> None:
    y = torch.arange(1000) % 10
    noisy, idx = flip_labels(y, 0.05, 10, seed=3)
    assert len(idx) == 50 and (noisy[idx] != y[idx]).all()
    unchanged = torch.ones(1000, dtype=torch.bool)
    unchanged[idx] = False
    assert torch.equal(noisy[unchanged], y[unchanged])
    again, idx2 = flip_labels(y, 0.05, 10, seed=3)
    assert torch.equal(again, noisy) and torch.equal(idx, idx2)
    assert not torch.equal(flip_labels(y, 0.05, 10, seed=4)[1], idx)
    with pytest.raises(CnnlabError, match="--flip must be a share between 0 and 1"):
        flip_labels(y, 5, 10)


def test_precision_at() -> None:
    scores = torch.tensor([0.9, 0.1, 0.8, 0.2, 0.7])
    assert precision_at(scores, torch.tensor([0, 2]), 2) == 1.0
    assert precision_at(scores, torch.tensor([1, 3]), 2) == 0.0
    assert precision_at(scores, torch.tensor([0, 3]), 2) == 0.5


def _png(path: Path, image: torch.Tensor) -> Path:
    from PIL import Image

    Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8)).save(path)
    return path


def test_influence_cli_proponents_and_opponents(cli, kept_run: Run, tmp_path: Path, digits) -> None:
    img = _png(tmp_path / "digit.png", digits.test.x[0])
    r = cli("influence", kept_run.path, "--image", img, "-k", "4", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    pro = [p["influence"] for p in doc["proponents"]]
    con = [p["influence"] for p in doc["opponents"]]
    assert len(pro) == len(con) == 4 and pro == sorted(pro, reverse=True) and con == sorted(con)
    assert pro[0] > 0 > con[0]
    # the strongest supporters of a prediction mostly carry the predicted label
    assert sum(p["label"] == doc["predicted"] for p in doc["proponents"]) >= 3
    assert Path(doc["files"]["grid"]).read_bytes()[:4] == b"\x89PNG"


def test_self_influence_cli_and_report(cli, kept_run: Run) -> None:
    r = cli("influence", kept_run.path, "--self", "-k", "5", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    scores = [t["self_influence"] for t in doc["top"]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True) and scores[-1] > doc["median"]
    assert doc["train_images"] == len(kept_run.load_data().train)
    r = cli("influence", kept_run.path)
    assert r.code == 1 and "either --image IMG" in r.err
    html = Path(json.loads(cli("report", kept_run.path, "--json").out)["report"]).read_text()
    assert "Highest self-influence" in html


@pytest.mark.slow
def test_label_noise_finds_flipped_labels_above_the_base_rate(tmp_path: Path, digits) -> None:
    result = label_noise(digits, 0.1, epochs=6, batch_size=32, out=tmp_path / "noisy")
    assert result.flipped == round(0.1 * result.train_images) and result.checkpoints == 6
    assert result.precision_tracin >= 2 * result.base_rate, result
    assert result.precision_loss >= 2 * result.base_rate, result
    saved = json.loads((tmp_path / "noisy" / "explain" / "label-noise.json").read_text())
    assert saved["precision_tracin"] == result.precision_tracin
