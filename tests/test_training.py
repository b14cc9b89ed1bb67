"""Training: exact resume after SIGKILL and Ctrl-C, atomic files, NaN stops, the config."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write, atomic_write_text
from cnnlab.run import CHECKPOINT, METRICS, WEIGHTS, Run
from cnnlab.training import TrainConfig
from conftest import cnnlab_process

# LeNet-5 on digits with augmentation: every piece of state a resume must restore is used
# (weights, momentum, one-cycle schedule, batch order, the augmentation generator).
ARGS = ["--model", "lenet5", "--data", "digits", "--epochs", "4", "--batch-size", "32",
        "--augment", "crop,flip", "--seed", "7"]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / WEIGHTS))


def _assert_bitwise_equal(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs"
    drop = ("images_per_s", "epoch_seconds", "train_seconds")
    strip = lambda run: [{k: v for k, v in m.items() if k not in drop} for m in Run.load(run).metrics()]  # noqa: E731
    assert strip(a) == strip(b)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run, trained by the same console script."""
    out = tmp_path_factory.mktemp("reference") / "run"
    p = cnnlab_process("train", *ARGS, "--out", out, "--quiet")
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    return out


def _wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the training process never got there"
        time.sleep(0.005)


def _checkpoint_position(run_dir: Path) -> tuple[int, int]:
    """(epochs done, batches done in the current epoch) of the checkpoint on disk now."""
    try:
        position = torch.load(run_dir / CHECKPOINT, weights_only=True)["position"]
    except FileNotFoundError:
        return -1, -1
    return position["epoch"], position["batch"]


def _epochs_logged(run_dir: Path) -> int:
    f = run_dir / METRICS
    return f.read_text().count('"event": "epoch"') if f.exists() else 0


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bitwise_equal(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # checkpoints every 7 steps (40 steps an epoch), so the resume starts in the middle of one
    p = cnnlab_process("train", *ARGS, "--checkpoint-every", "7", "--out", out, "--quiet")
    _wait_for(lambda: _checkpoint_position(out)[0] >= 1)
    _wait_for(lambda: _checkpoint_position(out)[1] > 0)  # a checkpoint inside epoch 2 (or later)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL
    assert not Run.load(out, weights="none").finished

    p = cnnlab_process("train", "--resume", out, "--quiet")
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert Run.load(out).finished
    _assert_bitwise_equal(reference, out)


@pytest.mark.slow
def test_ctrl_c_saves_and_says_how_to_resume(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    p = cnnlab_process("train", *ARGS, "--out", out, "--quiet")
    _wait_for(lambda: _epochs_logged(out) >= 1)
    time.sleep(0.1)  # into epoch 2, most likely; wherever it lands, the resume must be exact
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130
    assert "Traceback" not in err
    assert f"cnnlab train --resume {out}" in err
    assert len(err.strip().splitlines()) == 1
    state = torch.load(out / CHECKPOINT, weights_only=True)
    assert state["position"]["epoch"] * 40 + state["position"]["batch"] == state["position"]["step"] >= 40

    p = cnnlab_process("train", "--resume", out, "--quiet")
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    _assert_bitwise_equal(reference, out)


@pytest.mark.slow
def test_a_kill_never_leaves_a_broken_checkpoint(tmp_path: Path) -> None:
    """SIGKILL at random instants while a checkpoint and weights are written every step."""
    out = tmp_path / "run"
    gen = torch.Generator().manual_seed(0)
    for attempt in range(4):
        args = ("--resume", out) if attempt else (*ARGS, "--checkpoint-every", "1", "--out", out)
        p = cnnlab_process("train", *args, "--quiet")
        _wait_for(lambda: (out / CHECKPOINT).exists())
        time.sleep(0.05 + 0.5 * torch.rand(1, generator=gen).item())
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        state = torch.load(out / CHECKPOINT, weights_only=True)  # loads: complete, not half-written
        assert state["position"]["step"] >= 1
        if (out / WEIGHTS).exists():
            Run.load(out)
    p = cnnlab_process("train", "--resume", out, "--quiet")
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert Run.load(out).finished
    assert not list(out.glob(".*.tmp-*"))  # what a kill left half-written is cleared on resume


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint.pt"
    atomic_write_text(target, "complete old content")

    def half_write(tmp: Path) -> None:
        tmp.write_text("half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, half_write)
    assert target.read_text() == "complete old content"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


class _Explodes(nn.Module):
    """A small CNN whose output turns to NaN from its 60th forward pass in training."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += self.training
        out = self.body(x)
        return out * float("nan") if self.training and self.calls >= 60 else out


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(digits, tmp_path: Path) -> None:
    model = _Explodes()
    model.eval()(digits.train.x[:1])  # materialise the lazy layer (not counted: eval mode)
    with pytest.raises(CnnlabError, match=r"loss became nan at epoch 2, batch 20/40.*last good checkpoint is kept"):
        cnnlab.train(model=model, data=digits, epochs=3, batch_size=32, out=tmp_path / "run", quiet=True)
    state = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)
    assert state["position"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    events = [m["event"] for m in Run.load(tmp_path / "run", model=_Explodes(), weights="none").metrics()]
    assert events == ["epoch", "stopped"]


def test_huge_learning_rate_is_one_sentence_from_the_cli(cli, tmp_path: Path) -> None:
    r = cli("train", "--model", "lenet5", "--data", "digits", "--epochs", "2", "--lr", "1e6", "--out", tmp_path / "r", "--quiet")
    assert r.code == 1
    assert r.err.startswith("error: the") and "try a lower --lr (this run used 1000000.0)" in r.err
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
    assert not (tmp_path / "r" / WEIGHTS).exists()


def test_run_directory_records_everything(trained_run: Run) -> None:
    files = {p.name for p in trained_run.path.iterdir()}
    assert {"config.toml", "provenance.json", "model.safetensors", "best.safetensors", "checkpoint.pt", "metrics.jsonl"} <= files
    config = TrainConfig.from_toml(trained_run.path / "config.toml")
    assert config == trained_run.config and config.lr == 0.05 and config.epochs == 4
    prov = json.loads((trained_run.path / "provenance.json").read_text())
    assert prov["data"]["name"] == "digits" and len(prov["data"]["sha256"]["train"]) == 64
    assert prov["seed"] == 0 and prov["versions"]["torch"] == torch.__version__
    assert prov["started"] <= prov["finished"]
    metrics = trained_run.metrics()
    assert [m["epoch"] for m in metrics if m["event"] == "epoch"] == [1, 2, 3, 4]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_s"} <= metrics[0].keys()
    assert metrics[-1]["event"] == "test" and metrics[-1]["test_acc"] > 0.8


def test_same_seed_same_weights_different_seed_different(digits, tmp_path: Path) -> None:
    kw = dict(model="logistic", data=digits, epochs=1, batch_size=64, quiet=True)
    a = cnnlab.train(out=tmp_path / "a", seed=3, **kw)
    b = cnnlab.train(out=tmp_path / "b", seed=3, **kw)
    c = cnnlab.train(out=tmp_path / "c", seed=4, **kw)
    assert torch.equal(_weights(a.path)["net.1.weight"], _weights(b.path)["net.1.weight"])
    assert not torch.equal(_weights(a.path)["net.1.weight"], _weights(c.path)["net.1.weight"])


@pytest.mark.parametrize("optimizer,schedule", [("adam", "cosine"), ("adamw", "step"), ("sgd", "none")])
def test_every_optimizer_and_schedule_learns(digits, tmp_path: Path, optimizer: str, schedule: str) -> None:
    run = cnnlab.train(model="mlp", data=digits, epochs=3, batch_size=64, optimizer=optimizer, schedule=schedule,
                       label_smoothing=0.1, out=tmp_path / "r", quiet=True)
    assert run.metrics()[-1]["test_acc"] > 0.85


@pytest.mark.parametrize("steps", range(1, 17))
def test_the_one_cycle_schedule_runs_any_number_of_steps_and_peaks_at_lr(steps: int) -> None:
    """4 steps used to divide by a warm-up of zero length (ZeroDivisionError) before the first."""
    from cnnlab.training.optim import make_schedule

    weight = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    schedule = make_schedule(optimizer, TrainConfig(schedule="onecycle", lr=0.1), total_steps=steps)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert max(lrs) <= 0.1 + 1e-9 and (steps < 3 or max(lrs) > 0.09)  # the peak falls between two steps


def test_an_existing_run_is_never_overwritten(trained_run: Run, tmp_path: Path) -> None:
    before = (trained_run.path / WEIGHTS).read_bytes()
    with pytest.raises(CnnlabError, match="already holds files; continue that run with `cnnlab train --resume"):
        cnnlab.train(model="lenet5", data="digits", epochs=1, out=trained_run.path, quiet=True)
    assert (trained_run.path / WEIGHTS).read_bytes() == before
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CnnlabError, match="is not a cnnlab run, so --overwrite will not delete it"):
        cnnlab.train(model="lenet5", data="digits", epochs=1, out=tmp_path, overwrite=True, quiet=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_resume_of_a_finished_run_is_refused(trained_run: Run) -> None:
    with pytest.raises(CnnlabError, match="already finished its 4 epochs"):
        cnnlab.resume(trained_run.path)


def test_config_toml_round_trip_and_precedence(tmp_path: Path, cli) -> None:
    cfg = TrainConfig(model="mlp", epochs=2, lr=0.1, augment="flip").resolved()
    (tmp_path / "c.toml").write_text(cfg.to_toml())
    assert TrainConfig.from_toml(tmp_path / "c.toml") == cfg
    r = cli("train", "--config", tmp_path / "c.toml", "--epochs", "1", "--out", tmp_path / "r", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["config"]["model"] == "mlp" and doc["config"]["epochs"] == 1 and doc["config"]["lr"] == 0.1


@pytest.mark.parametrize(
    "text,message",
    [
        ('epochs = "ten"\n', "'epochs' must be an integer, got 'ten'"),
        ("epoch = 3\n", "unknown key"),
        ("model = [\n", "is not valid TOML"),
    ],
)
def test_bad_config_files_are_one_sentence(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(CnnlabError, match=message):
        TrainConfig.from_toml(tmp_path / "c.toml")


@pytest.mark.parametrize(
    "override,message",
    [({"optimizer": "rmsprop"}, "optimizer must be one of sgd, adam, adamw"),
     ({"schedule": "linear"}, "schedule must be one of"),
     ({"augment": "rotate"}, "rotate"),
     ({"batch_size": 1}, "batch size must be at least 2")],
)
def test_bad_choices_are_refused_before_training(override: dict, message: str) -> None:
    with pytest.raises(CnnlabError, match=message):
        TrainConfig(**override).resolved()
