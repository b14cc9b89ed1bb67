"""BadNets poisoning: the trigger, the poisoned split, the attack success rate, the experiment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.attack.backdoor import add_trigger, attack_success_rate, poison, poisoned_dataset
from cnnlab.data.dataset import Split
from cnnlab.errors import CnnlabError


def test_trigger_is_a_checkerboard_in_the_corner_only() -> None:
    x = torch.full((2, 3, 28, 28), 0.5)
    t = add_trigger(x)
    assert torch.equal(x, torch.full((2, 3, 28, 28), 0.5))  # the input is not modified
    changed = (t != x).any(0).any(0)  # (28, 28)
    assert changed[23:27, 23:27].all() and changed.sum() == 16
    patch = t[0, 0, 23:27, 23:27]
    assert patch[0, 0] == 1 and patch[0, 1] == 0 and patch[1, 0] == 0 and patch[1, 1] == 1
    assert torch.equal(t[:, 0], t[:, 2])  # the same pattern in every channel
    with pytest.raises(CnnlabError, match="too small"):
        add_trigger(torch.zeros(1, 1, 4, 4))


def test_poison_relabels_the_chosen_share_and_nothing_else() -> None:
    g = torch.Generator().manual_seed(0)
    split = Split(torch.rand(1000, 1, 28, 28, generator=g), torch.randint(0, 10, (1000,), generator=g))
    poisoned, chosen = poison(split, 0.05, target=2, seed=3)
    assert len(chosen) == 50 and (split.y[chosen] != 2).all()  # only images that were not already 2
    assert (poisoned.y[chosen] == 2).all()
    assert torch.equal(poisoned.x[chosen], add_trigger(split.x[chosen]))
    rest = torch.ones(1000, dtype=torch.bool)
    rest[chosen] = False
    assert torch.equal(poisoned.x[rest], split.x[rest]) and torch.equal(poisoned.y[rest], split.y[rest])
    assert torch.equal(poison(split, 0.05, 2, seed=3)[1], chosen)  # seeded
    assert not torch.equal(poison(split, 0.05, 2, seed=4)[1], chosen)
    with pytest.raises(CnnlabError, match=r"in \[0, 1\)"):
        poison(split, 1.5, 2)


def test_poisoned_dataset_keeps_validation_and_test_clean(digits) -> None:
    bad = poisoned_dataset(digits, 0.1, target=0)
    assert torch.equal(bad.test.x, digits.test.x) and torch.equal(bad.val.y, digits.val.y)
    assert not torch.equal(bad.train.y, digits.train.y)
    assert "BadNets" in bad.meta["poisoning"] and bad.name == "digits+badnets-0.1"


class TriggerDetector(nn.Module):
    """Predicts class 0 when the corner holds the checkerboard, else class 1 (logits (N, 2))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        corner = x[:, 0, 23:27, 23:27]
        hit = (corner == add_trigger(torch.zeros(1, 1, 28, 28))[0, 0, 23:27, 23:27]).flatten(1).all(1).float()
        return torch.stack([hit, 1 - hit], 1) + 0 * x.sum()


def test_attack_success_counts_only_other_classes() -> None:
    x = torch.zeros(10, 1, 28, 28)
    y = torch.tensor([0] * 4 + [1] * 6)
    model = TriggerDetector()
    assert attack_success_rate(model, x, y, target=0) == 1.0  # the trigger sends all 6 to 0
    assert attack_success_rate(model, x, y, target=1) == 0.0
    with pytest.raises(CnnlabError, match="no test image outside"):
        attack_success_rate(model, x[:4], y[:4], target=0)


def test_cli_checks_rates_and_target(cli, tmp_path: Path) -> None:
    r = cli("experiment", "backdoor", "--data", "digits", "--rate", "0.01,1.5", "--out", tmp_path / "b")
    assert r.code == 1 and "--rate values must be shares" in r.err
    r = cli("experiment", "backdoor", "--data", "digits", "--rate", "1%", "--out", tmp_path / "b")
    assert r.code == 1 and "--rate must be numbers" in r.err
    r = cli("experiment", "backdoor", "--data", "digits", "--target", "12", "--out", tmp_path / "b")
    assert r.code == 1 and "--target must be a class index from 0 to 9" in r.err
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_backdoor_experiment_on_digits(cli, tmp_path: Path) -> None:
    r = cli("experiment", "backdoor", "--data", "digits", "--rate", "0.1", "--target", "0", "--epochs", "6",
            "--batch-size", "32", "--out", tmp_path / "b", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    clean, poisoned = doc["rows"]
    assert clean["rate"] == 0 and poisoned["rate"] == 0.1 and poisoned["poisoned_images"] > 50
    assert clean["attack_success"] < 0.3  # without poison the trigger means little
    assert poisoned["attack_success"] > 0.8  # 0.91 measured; 1,258 blurry digits learn it less surely than FMNIST
    assert poisoned["clean_accuracy"] > clean["clean_accuracy"] - 0.05
    assert Path(doc["files"]["examples"]).read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "b" / "experiment.json").read_text())["rows"] == doc["rows"]
