"""The fast recipe (#7): what it chooses, the time budget that plans the epochs, flip TTA,
channels_last, and the GPU branch's choices (checked without a GPU)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import torch

import cnnlab
from cnnlab.config import parse_budget
from cnnlab.errors import CnnlabError
from cnnlab.models import build_model
from cnnlab.run import Run
from cnnlab.tasks.classify import predict_logits
from cnnlab.training import TrainConfig
from cnnlab.training.recipes import (
    RESERVE_SECONDS,
    apply_recipe,
    given_options,
    plan_epochs,
    recipe_batch_size,
    recipe_choices,
)


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("2m", 120), ("15m", 900), ("1h", 3600), ("45", 45), ("1.5m", 90)])
def test_budget_parses_times(text: str, seconds: float) -> None:
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-2m", "0s", "2x"])
def test_a_bad_budget_is_one_sentence(text: str) -> None:
    with pytest.raises(CnnlabError, match="--budget must be a time like"):
        parse_budget(text)


def test_the_recipe_fills_only_what_was_not_given() -> None:
    cfg = TrainConfig(recipe="fast", lr=0.05)
    done = apply_recipe(cfg, given_options(None, {"recipe": "fast", "lr": 0.05, "epochs": 3}))
    assert (done.model, done.lr, done.tta, done.channels_last, done.val_fraction) == ("fastnet", 0.05, True, True, 0.0)
    assert done.budget == 0.0  # epochs given: no budget to plan with
    planned = apply_recipe(TrainConfig(recipe="fast"), {"recipe"})
    assert planned.budget == 120.0 and planned.augment == "flip"
    assert given_options(TrainConfig(epochs=4, recipe="fast"), {}) == {"epochs", "recipe"}


def test_the_gpu_branch_is_airbench_sized() -> None:
    gpu = recipe_choices("fast", cuda=True)
    assert (gpu["model"], gpu["device"], gpu["batch_size"], gpu["augment"], gpu["epochs"]) == (
        "fastnet-wide", "cuda", 1024, "crop,flip", 10)
    assert "budget" not in gpu
    with pytest.raises(CnnlabError, match="unknown recipe 'slow'"):
        recipe_choices("slow", cuda=False)


def test_small_data_gets_smaller_batches_and_lr() -> None:
    cfg = TrainConfig(recipe="fast", batch_size=256, lr=0.4)
    small = recipe_batch_size(cfg, 1438, {"recipe"})
    assert (small.batch_size, small.lr) == (64, 0.1)  # >= 20 steps an epoch, lr scaled with the batch
    assert recipe_batch_size(cfg, 60_000, {"recipe"}) == cfg
    assert recipe_batch_size(cfg, 1438, {"recipe", "batch_size"}).batch_size == 256  # given: kept
    assert recipe_batch_size(cfg, 1438, {"recipe", "lr"}).lr == 0.4


@pytest.mark.slow
def test_plan_fits_the_budget_and_leaves_the_model_alone(digits) -> None:
    torch.manual_seed(0)
    model = build_model("fastnet", digits.input_shape, digits.num_classes)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    cfg = TrainConfig(model="fastnet", batch_size=64, budget=60.0, channels_last=True)
    epochs, plan = plan_epochs(model, digits.train.x, digits.train.y, cfg, spent=5.0, n_test=len(digits.test))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())
    steps = -(-len(digits.train) // 64)
    # epoch_s is rounded to 0.01 s and step_s to 0.0001 s: an epoch of 0.3 s (an idle machine) is off by up to 2%
    assert plan["epoch_s"] == pytest.approx(plan["step_s"] * steps, rel=0.01, abs=0.005 + steps * 0.00005)
    assert plan["test_s"] > 0
    left, r = 60.0 - 5.0 - plan["test_s"] - RESERVE_SECONDS, 0.006  # the plan's numbers are rounded to 0.01
    assert int((left - r) // (plan["epoch_s"] + r)) <= epochs <= int((left + r) // (plan["epoch_s"] - r))
    tiny, _ = plan_epochs(model, digits.train.x, digits.train.y, cfg, spent=59.0)
    assert tiny == 1  # over budget already: one epoch, never zero


def test_a_gans_budget_times_its_adversarial_step(digits, monkeypatch) -> None:
    """A GAN's step is its generator's and discriminator's updates, not a classifier's step
    through the discriminator: the plan times that step, on a copy, and both nets learn in it."""
    from cnnlab.bench import make_step
    from cnnlab.tasks.base import get_task
    from cnnlab.tasks.generate import AdversarialTraining

    torch.manual_seed(0)
    model = build_model("dcgan", digits.input_shape, digits.num_classes)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(model="dcgan", batch_size=32, budget=60.0, optimizer="adam", lr=2e-4)
    task = get_task("generate", digits.classes).bind(model)
    steps = []
    real_step = AdversarialTraining.step
    monkeypatch.setattr(AdversarialTraining, "step", lambda own, x, y, groups=None: steps.append(own) or real_step(own, x, y))
    epochs, plan = plan_epochs(model, digits.train.x, digits.train.y, cfg, spent=5.0, task=task)
    assert len(steps) == 8 and all(own.model is not model for own in steps)  # 3 warm-up + 5 timed, on a copy
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert epochs >= 1 and plan["step_s"] > 0
    own = task.own_training(model, cfg, torch.device("cpu"))
    make_step(model, digits.train.x[:32], digits.train.y[:32], own=own)()
    after = model.state_dict()
    for net in ("generator", "discriminator"):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(f"net.{net}."))


@pytest.mark.slow
def test_fast_recipe_trains_and_records_its_choices(cli, tmp_path: Path) -> None:
    out = tmp_path / "fast"
    result = cli("train", "--recipe", "fast", "--data", "digits", "--epochs", "4", "--out", out, "--json")
    assert result.code == 0, result.err
    test_acc = json.loads(result.out)["test_acc"]
    assert test_acc > 0.85
    cfg = tomllib.loads((out / "config.toml").read_text())
    assert (cfg["model"], cfg["recipe"], cfg["tta"], cfg["channels_last"], cfg["epochs"], cfg["batch_size"]) == (
        "fastnet", "fast", True, True, 4, 64)
    run = Run.load(out)
    assert run.evaluate().accuracy == pytest.approx(test_acc, abs=1e-6)  # scored with TTA, as in training


@pytest.mark.slow
def test_budget_plans_the_epochs_and_records_the_plan(cli, tmp_path: Path) -> None:
    out = tmp_path / "budget"
    result = cli("train", "--recipe", "fast", "--data", "digits", "--budget", "40s", "--out", out, "--json")
    assert result.code == 0, result.err
    plan = json.loads((out / "provenance.json").read_text())["budget"]
    cfg = tomllib.loads((out / "config.toml").read_text())
    assert plan["budget_s"] == 40.0 and cfg["budget"] == 40.0
    assert cfg["epochs"] == plan["epochs"] >= 1
    epochs = [m for m in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if m["event"] == "epoch"]
    assert len(epochs) == plan["epochs"]


def test_tta_is_the_mean_of_image_and_mirror(trained_run: Run, digits) -> None:
    x = digits.test.x[:16]
    model = trained_run.model
    with torch.no_grad():
        expected = (model(x) + model(x.flip(3))) / 2
    assert torch.allclose(predict_logits(model, x, tta=True), expected, atol=1e-5)
    assert not torch.allclose(predict_logits(model, x, tta=False), expected, atol=1e-3)


@pytest.mark.slow
def test_channels_last_trains_like_contiguous(digits, tmp_path: Path) -> None:
    runs = [
        cnnlab.train(model="fastnet", data=digits, epochs=1, batch_size=64, lr=0.05, channels_last=cl,
                     out=tmp_path / str(cl), quiet=True)
        for cl in (False, True)
    ]
    a, b = (r.metrics()[0]["train_loss"] for r in runs)
    assert a == pytest.approx(b, rel=2e-2)  # the same computation in another memory layout (rounding differs)
    reloaded = Run.load(tmp_path / "True")
    assert reloaded.evaluate(digits).accuracy == pytest.approx(runs[1].metrics()[-1]["test_acc"], abs=1e-6)


def test_fastnet_wide_runs_under_bf16_autocast() -> None:
    """The GPU path's numerics (bf16 autocast), exercised on the CPU."""
    model = build_model("fastnet-wide", (3, 32, 32), 10).to(memory_format=torch.channels_last)
    x = torch.rand(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())


def test_fastnet_refuses_images_too_small() -> None:
    with pytest.raises(CnnlabError, match="needs at least 4x4 pixels"):
        build_model("fastnet", (1, 3, 3), 10)
