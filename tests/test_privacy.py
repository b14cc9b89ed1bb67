"""Privacy: DP-SGD through Opacus (`--dp`) and membership inference (`cnnlab audit privacy`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.audit.privacy import attack_metrics
from cnnlab.data import num_batches
from cnnlab.errors import CnnlabError
from cnnlab.models.private import dp_ready
from cnnlab.run import Run


def test_attack_metrics_on_known_scores() -> None:
    members, nonmembers = torch.arange(100, 200).float(), torch.arange(0, 100).float()
    perfect = attack_metrics("x", members, nonmembers)
    assert perfect.auc == 1.0 and perfect.tpr_at_1pct_fpr == 1.0 and perfect.advantage == 1.0
    g = torch.Generator().manual_seed(0)
    same = attack_metrics("x", torch.randn(2000, generator=g), torch.randn(2000, generator=g))
    assert abs(same.auc - 0.5) < 0.03 and same.tpr_at_1pct_fpr < 0.05
    inverted = attack_metrics("x", nonmembers, members)
    assert inverted.auc == 0.0 and inverted.tpr_at_1pct_fpr == 0.0


def test_dp_ready_replaces_batchnorm_and_inplace_relu() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=True))
    fixed = dp_ready(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fixed.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in fixed.modules())
    assert not any(getattr(m, "inplace", False) for m in fixed.modules())


@pytest.mark.parametrize("flags, message", [
    ({"dp": True, "adversarial": "pgd", "eps": 0.1}, "--dp and --adversarial cannot be combined"),
    ({"dp": True, "target_epsilon": 0.0}, "target epsilon must be above 0"),
    ({"dp": True, "delta": 1.0}, "delta must be in (0, 1)"),
    ({"dp": True, "max_grad_norm": -1.0}, "max grad norm must be above 0"),
])
def test_dp_options_are_checked(flags: dict, message: str) -> None:
    with pytest.raises(CnnlabError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cnnlab.train(model="lenet5", data="digits", out="unused", quiet=True, **flags)


def test_dp_training_spends_the_target_epsilon(cli, tmp_path: Path) -> None:
    out = tmp_path / "dp"
    # --dp is a flag (no value), as the README shows it
    r = cli("train", "--model", "lenet5", "--data", "digits", "--epochs", "2", "--batch-size", "64", "--dp",
            "--target-epsilon", "4", "--out", out, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["config"]["dp"] is True
    run = Run.load(out)
    spent = run.provenance["privacy"]
    assert 3.6 < spent["epsilon"] <= 4.05 and spent["delta"] == 1e-5 and spent["noise_multiplier"] > 0.3
    epochs = [m for m in run.metrics() if m.get("event") == "epoch"]
    assert 0 < epochs[0]["epsilon"] < epochs[1]["epsilon"] == pytest.approx(spent["epsilon"])
    n = len(run.load_data().train)
    assert spent["steps"] == 2 * num_batches(n, 64, n % 64 == 1)


def test_cli_audit_privacy(cli, trained_run: Run, tmp_path: Path) -> None:
    run_copy = tmp_path / "run"
    shutil.copytree(trained_run.path, run_copy)
    r = cli("audit", "privacy", run_copy, "--n", "200", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["members"] == doc["nonmembers"] == 200 and len(doc["attacks"]) == 2
    assert all(0 <= a["auc"] <= 1 and 0 <= a["tpr_at_1pct_fpr"] <= 1 for a in doc["attacks"])
    assert doc["member_loss_mean"] < doc["nonmember_loss_mean"]  # members were fit
    assert json.loads((run_copy / "audit" / "privacy.json").read_text()) == doc
    # calibrating with the model itself cancels every difference: the calibrated attack is blind
    r = cli("audit", "privacy", run_copy, "--n", "200", "--reference", run_copy, "--json")
    calibrated = json.loads(r.out)["attacks"][1]
    assert calibrated["auc"] == 0.5 and calibrated["tpr_at_1pct_fpr"] == 0.0
    r = cli("audit", "privacy", run_copy)
    assert r.code == 0 and "TPR at 1% FPR" in r.out


def test_the_loss_score_keeps_ranking_where_float32_loss_rounds_to_zero() -> None:
    from cnnlab.audit.privacy import per_example_loss

    class Logits(nn.Module):  # the "image" is its own logits
        def __init__(self) -> None:
            super().__init__()
            self.unused = nn.Parameter(torch.zeros(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)

    z = torch.tensor([[20.0, 0.0, 0.0], [30.0, 0.0, 0.0], [40.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    y = torch.zeros(4, dtype=torch.long)
    assert (nn.functional.cross_entropy(z, y, reduction="none")[:3] == 0).all()  # float32 saturates
    m = per_example_loss(Logits(), z.view(4, 1, 1, 3), y)
    assert m[0] > m[1] > m[2] and m[3] > 0
    assert torch.allclose(nn.functional.softplus(m[3]).float(), nn.functional.cross_entropy(z[3:], y[3:]))
