"""Bias audit: tinted-fashion-mnist's groups, per-group metrics, `--mitigate`, `cnnlab audit bias`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab.audit.bias import group_metrics
from cnnlab.data import Dataset, Split, load_data, tinted
from cnnlab.data.groups import groups_for
from cnnlab.data.idx import write_idx
from cnnlab.errors import CnnlabError
from cnnlab.training.mitigate import GroupLoss, make_group_loss


def test_the_tint_is_read_back_from_the_pixels(digits: Dataset) -> None:
    x, y = digits.test.x[:200], digits.test.y[:200]
    tints = torch.randint(0, 10, (len(y),), generator=torch.Generator().manual_seed(1))
    rgb = tinted.tint(x, tints)
    assert rgb.shape == (200, 3, 28, 28) and 0 <= rgb.min() and rgb.max() <= 1
    assert torch.equal(tinted.tint_of(rgb), tints)
    assert torch.equal(tinted.group_ids(rgb, y), 2 * y + (tints == y).long())


def test_tinted_loader_on_small_files_in_the_real_format(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for part, n in (("train", 2000), ("t10k", 500)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        x[:, :4, :] = 0  # a background strip, as every Fashion-MNIST image has
        write_idx(tmp_path / f"{part}-images-idx3-ubyte.gz", x)
        write_idx(tmp_path / f"{part}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))
    ds = load_data("tinted-fashion-mnist", data_dir=tmp_path)
    assert ds.input_shape == (3, 28, 28) and ds.licence == "MIT" and "tint" in ds.meta
    agree = {name: float((tinted.group_ids(s.x, s.y) % 2).float().mean()) for name, s in ds.splits().items()}
    assert 0.93 < agree["train"] < 0.97  # 95% of training images wear their class's tint
    assert agree["test"] < 0.2  # random at test: one chance in ten
    again = load_data("tinted-fashion-mnist", data_dir=tmp_path)
    assert again.sha256() == ds.sha256()  # the tints are part of the dataset: fixed


def test_group_metrics_by_hand() -> None:
    # groups a (4 images, 3 right) and b (2 images, 0 right); classes 0/1
    y_true = torch.tensor([0, 0, 1, 1, 0, 1])
    y_pred = torch.tensor([0, 0, 1, 0, 1, 0])
    groups = torch.tensor([0, 0, 0, 0, 1, 1])
    r = group_metrics(y_true, y_pred, groups, ["a", "b"], ["zero", "one"], "test")
    assert r.average_accuracy == pytest.approx(3 / 6)
    assert r.worst_group == "b" and r.worst_group_accuracy == 0.0
    assert r.largest_gap == pytest.approx(0.75) and r.mean_group_accuracy == pytest.approx(0.375)
    assert [g["count"] for g in r.by_group] == [2, 4]
    by_class = {c["class"]: c for c in r.by_class}
    assert by_class["zero"]["accuracy"] == pytest.approx(2 / 3) and by_class["one"]["accuracy"] == pytest.approx(1 / 3)
    assert by_class["zero"]["worst_group"] == "b" and by_class["zero"]["worst_group_accuracy"] == 0.0


def test_group_sources(digits: Dataset, tmp_path: Path) -> None:
    x, y = digits.test.x, digits.test.y
    ids, names, _ = groups_for("brightness", "digits", digits.classes, x, y)
    assert names == ["dark third", "medium third", "bright third"] and torch.bincount(ids).min() >= len(y) // 3 - 1
    file = tmp_path / "groups.txt"
    file.write_text("\n".join("left" if i % 2 else "right" for i in range(len(y))) + "\n")
    ids, names, _ = groups_for(str(file), "digits", digits.classes, x, y)
    assert names == ["left", "right"] and int(ids.sum()) == (len(y) + 1) // 2  # even lines are "right"
    file.write_text("a\nb\n")
    with pytest.raises(CnnlabError, match=f"has 2 lines but the split has {len(y)} images"):
        groups_for(str(file), "digits", digits.classes, x, y)
    with pytest.raises(CnnlabError, match="defines no groups"):
        groups_for("group", "digits", digits.classes, x, y)


def test_groupdro_moves_weight_to_the_worst_group_and_reweight_balances() -> None:
    counts = torch.tensor([90.0, 10.0])
    group_fn = lambda x, y: x  # noqa: E731 - the batch "images" are the group ids here
    logits = torch.tensor([[5.0, 0.0]] * 4 + [[0.0, 5.0]] * 2)  # group 0 right, group 1 wrong
    y = torch.zeros(6, dtype=torch.long)
    g = torch.tensor([0, 0, 0, 0, 1, 1])
    ce_each = lambda out, target: torch.nn.functional.cross_entropy(out, target, reduction="none")  # noqa: E731
    dro = GroupLoss("groupdro", group_fn, counts, ce_each)
    for _ in range(20):
        dro(logits, y, g)
    assert dro.q[1] > 0.5 > dro.q[0]  # the wrong group now weighs most
    rew = GroupLoss("reweight", group_fn, counts, ce_each)
    assert torch.allclose(rew.weights, torch.tensor([100 / 180, 100 / 20]))
    ce = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    assert rew(logits, y, g).item() == pytest.approx((rew.weights[g] * ce).mean().item())


def test_mitigate_needs_a_dataset_with_groups(digits: Dataset) -> None:
    with pytest.raises(CnnlabError, match="needs a dataset with groups"):
        make_group_loss("groupdro", "digits", digits.train.x, digits.train.y, lambda out, target: out)
    with pytest.raises(CnnlabError, match="mitigate must be none, reweight or groupdro"):
        cnnlab.train(model="lenet5", data=digits, mitigate="dro", out="unused", quiet=True)


@pytest.fixture(scope="module")
def tinted_digits(digits: Dataset) -> Dataset:
    """Digits on tints that agree with the class 95% of the time in train/val, random at test."""
    g = torch.Generator().manual_seed(0)

    def split(s: Split, agree: float) -> Split:
        tints = torch.where(torch.rand(len(s), generator=g) < agree, s.y, torch.randint(0, 10, (len(s),), generator=g))
        return Split(tinted.tint(s.x, tints), s.y)

    return Dataset("tinted-fashion-mnist", digits.classes, split(digits.train, 0.95), split(digits.val, 0.95),
                   split(digits.test, 0.0))


def test_groupdro_training_keeps_q_in_the_checkpoint(tinted_digits: Dataset, tmp_path: Path) -> None:
    run = cnnlab.train(model="lenet5", data=tinted_digits, epochs=2, batch_size=64, mitigate="groupdro",
                       out=tmp_path / "dro", quiet=True)
    state = torch.load(run.path / "checkpoint.pt", weights_only=True)
    q = state["group_loss"]["q"]
    assert q.shape == (20,) and q.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert q.max() > 2 * q.min() > 0  # the adversary moved away from uniform


def test_cli_audit_bias(cli, trained_run, tmp_path: Path) -> None:
    run_copy = tmp_path / "run"
    shutil.copytree(trained_run.path, run_copy)
    r = cli("audit", "bias", run_copy, "--groups", "class", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    recall = {c: s["recall"] for c, s in trained_run.evaluate().to_dict()["per_class"].items()}
    for row in doc["by_group"]:
        assert row["accuracy"] == pytest.approx(recall[row["group"]])
    assert doc["worst_group_accuracy"] == min(recall.values())
    assert json.loads((run_copy / "audit" / "bias.json").read_text()) == doc
    r = cli("audit", "bias", run_copy)
    assert r.code == 0 and "worst-group accuracy" in r.out and "per class" in r.out
    r = cli("audit", "bias", run_copy, "--groups", "tint")
    assert r.code == 1 and "neither an attribute" in r.err
