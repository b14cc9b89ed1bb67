"""benchmarks/time_to_accuracy.py: the race's bookkeeping, its budget stop, and a digits smoke run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cnnlab.data import Split

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "time_to_accuracy.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("time_to_accuracy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


tta = _load_script()


def _curve(name: str, accs: list[float], step_s: float = 10.0, start_s: float = 1.0):
    curve = tta.Curve(name, start_s=start_s, train_s=step_s * len(accs))
    curve.points = [{"epoch": i + 1, "clock_s": start_s + step_s * (i + 1), "test_acc": a} for i, a in enumerate(accs)]
    return curve


def test_time_to_a_threshold_is_the_first_epoch_at_or_above_it():
    curve = _curve("x", [0.85, 0.91, 0.905, 0.925, 0.931])  # dips after 0.91: the first crossing counts
    assert curve.time_to(0.90) == 21.0
    assert curve.time_to(0.92) == 41.0
    assert curve.time_to(0.93) == 51.0
    assert curve.time_to(0.95) is None
    summary = curve.summary()
    assert summary["epochs"] == 5 and summary["final_test_acc"] == 0.931
    assert summary["time_to"] == {"0.90": 21.0, "0.92": 41.0, "0.93": 51.0}


def test_ratios_are_against_fast_and_a_contender_that_never_got_there_gives_a_lower_bound(capsys):
    curves = {
        "fast": _curve("fast", [0.88, 0.91], step_s=5.0),  # 0.90 at 11 s
        "plain-resnet20": _curve("plain-resnet20", [0.80, 0.89, 0.92], step_s=20.0),  # 0.90 at 61 s
        "lenet5": _curve("lenet5", [0.80, 0.85], step_s=3.0),  # never: clock 7 s
    }
    ratio = tta.ratios(curves)
    assert ratio["plain-resnet20"] == {"ratio": pytest.approx(61 / 11), "lower_bound": False}
    assert ratio["lenet5"] == {"ratio": pytest.approx(7 / 11), "lower_bound": True}
    tta.print_table(curves, ratio)
    out = capsys.readouterr().out
    assert "fast reaches 0.90 5.5x sooner than plain-resnet20" in out
    assert "| lenet5 | 2 | 1.0 | not reached in 7 s |" in out
    assert tta.ratios({"fast": _curve("fast", [0.5])}) == {}  # no time to 0.90, nothing to divide by


def test_crop_flip_shifts_each_image_within_the_padding_and_may_mirror_it():
    x = torch.rand(16, 1, 8, 8)
    out = tta.crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    assert out.shape == x.shape
    padded = F.pad(x, (2, 2, 2, 2))
    mirrored = 0
    for i in range(len(x)):
        shifts = [padded[i, :, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)]
        plain = any(torch.equal(out[i], s) for s in shifts)
        flipped = any(torch.equal(out[i], s.flip(2)) for s in shifts)
        assert plain or flipped
        mirrored += flipped and not plain
    assert 0 < mirrored < len(x)  # about half are mirrored


def test_plain_loop_stops_at_its_budget_without_scoring_the_cut_epoch():
    torch.manual_seed(0)
    data = Split(torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,)))
    model = tta.six_layer_cnn(1, 10, 28)
    assert model(data.x[:2]).shape == (2, 10)
    curve = tta.plain_fit(tta.Curve("plain-cnn"), model, data, data, tta.flip,
                          epochs=3, batch_size=16, lr=0.1, tta=True, budget_s=0.0, seed=0)
    assert curve.stopped_by_budget and curve.points == []
    assert curve.images == 16  # one step, then the budget check
    curve = tta.plain_fit(tta.Curve("plain-cnn"), model, data, data, tta.flip,
                          epochs=2, batch_size=16, lr=0.1, tta=True, budget_s=1e9, seed=0)
    assert not curve.stopped_by_budget and [p["epoch"] for p in curve.points] == [1, 2]
    assert curve.images == 128 and curve.points[0]["clock_s"] < curve.points[1]["clock_s"] == curve.clock_s


def test_a_cnnlab_contender_past_its_budget_is_stopped_like_ctrl_c_and_the_process_lives_on(digits, tmp_path):
    curve = tta.cnnlab_contender("lenet5", digits, tmp_path / "run", budget_s=1.0, model="lenet5", epochs=200,
                                 batch_size=32)
    assert curve.stopped_by_budget
    assert len(curve.points) < 200
    assert (tmp_path / "run" / "checkpoint.pt").is_file()  # fit saved where it stopped
    clocks = [p["clock_s"] for p in curve.points]
    assert clocks == sorted(clocks) and all(c > curve.start_s for c in clocks)
    assert curve.images == len(digits.train) * len(curve.points)


def test_a_cnnlab_contender_is_scored_on_the_test_split_after_every_epoch(digits, tmp_path):
    curve = tta.cnnlab_contender("lenet5", digits, tmp_path / "run", budget_s=1e9, model="lenet5", epochs=2,
                                 batch_size=32)
    assert not curve.stopped_by_budget
    records = list(map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()))
    epochs = [r for r in records if r["event"] == "epoch"]
    assert [p["test_acc"] for p in curve.points[:2]] == [r["val_acc"] for r in epochs]
    assert records[-1]["event"] == "test" and records[-1]["test_acc"] == curve.points[-1]["test_acc"]
    # the val split it scored each epoch on was the test split: the same 359 images
    assert records[-1]["test_loss"] == pytest.approx(epochs[-1]["val_loss"])
    assert curve.start_s > 0 and curve.train_s == pytest.approx(sum(r["train_seconds"] for r in epochs))
    assert curve.points[-1]["clock_s"] == pytest.approx(curve.clock_s)
    assert curve.scoring_s > 0 and curve.images == 2 * len(digits.train)


@pytest.mark.slow
def test_digits_smoke_runs_every_contender_and_prints_the_table(tmp_path):
    out_json = tmp_path / "tta.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--data", "digits", "--max-minutes", "0.2", "--epochs-resnet", "1",
         "--threads", "2", "--out", str(tmp_path / "runs"), "--json", str(out_json)],
        cwd=ROOT, env={**os.environ, "CNNLAB_ENERGY": "0"}, capture_output=True, text=True, timeout=600,
    )
    print(proc.stdout)  # the table, for `pytest -s`
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out_json.read_text())
    assert doc["data"] == "digits" and doc["test_images"] == 359 and doc["thresholds"] == [0.90, 0.92, 0.93]
    assert list(doc["contenders"]) == list(tta.CONTENDERS)
    table = proc.stdout[proc.stdout.index("| contender |"):]
    for name, c in doc["contenders"].items():
        assert f"| {name} |" in table
        if c["skipped"]:
            continue
        clocks = [p["clock_s"] for p in c["points"]]
        assert clocks == sorted(clocks) and all(0 <= p["test_acc"] <= 1 for p in c["points"])
        t90, t92, t93 = c["time_to"].values()
        for lower, higher in ((t90, t92), (t92, t93)):
            assert higher is None or (lower is not None and lower <= higher)  # t90 <= t92 <= t93 when reached
        assert all(t in clocks for t in (t90, t92, t93) if t is not None)
    if doc["ratios_to_fast_t90"]:
        assert "sooner than plain-resnet20" in proc.stdout
