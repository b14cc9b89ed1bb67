"""The shared spine carries every task: a segmentation run and a detection run resume bit for
bit after a SIGKILL (their masks and boxes moved by the same crops and flips), and a
segmentation run trains on two processes like on one."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import cnnlab
from cnnlab.run import CHECKPOINT, WEIGHTS, Run
from conftest import cnnlab_process

# fcn on 24x24 scenes: 2,025 training images = 32 batches of 64 an epoch (the last of 41), with
# crops and flips that move the masks, so the resumed augmentation stream is checked too.
ARGS = ["--model", "fcn", "--data", "shapes", "--image-size", "24", "--epochs", "2", "--batch-size", "64",
        "--augment", "crop,flip", "--seed", "5"]
# yolo the same way: its grid targets are built from the boxes the crops and flips moved, and
# Adam's moments are state a resume must restore too.
DETECT_ARGS = ["--model", "yolo", *ARGS[2:], "--optimizer", "adam"]


def _finish(p, timeout: float = 600) -> str:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    return out


def _position(run_dir: Path) -> tuple[int, int]:
    try:
        position = torch.load(run_dir / CHECKPOINT, weights_only=True)["position"]
    except (FileNotFoundError, RuntimeError, EOFError):
        return -1, -1
    return position["epoch"], position["batch"]


def _records(run_dir: Path) -> list[dict]:
    drop = ("images_per_s", "epoch_seconds", "train_seconds")
    return [{k: v for k, v in m.items() if k not in drop} for m in Run.load(run_dir).metrics()]


@pytest.mark.slow
def test_segmentation_sigkill_then_resume_is_bitwise_equal(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    _finish(cnnlab_process("train", *ARGS, "--out", reference, "--quiet"))
    test = _records(reference)[-1]
    assert test["event"] == "test" and test["test_miou"] > 0.3  # it learned: the comparison means something

    _assert_killed_and_resumed_equal(ARGS, reference, tmp_path / "run")


@pytest.mark.slow
def test_detection_sigkill_then_resume_is_bitwise_equal(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    _finish(cnnlab_process("train", *DETECT_ARGS, "--out", reference, "--quiet"))
    first, second, test = _records(reference)
    assert test["event"] == "test" and "test_map_50" in test
    assert second["train_loss"] < first["train_loss"]  # it learned: the comparison means something
    _assert_killed_and_resumed_equal(DETECT_ARGS, reference, tmp_path / "run")


def _assert_killed_and_resumed_equal(args: list[str], reference: Path, out: Path) -> None:
    """Train with `args` into `out`, SIGKILL it after a checkpoint inside epoch 2, resume: the
    weights and every record equal those of the uninterrupted `reference`."""
    p = cnnlab_process("train", *args, "--checkpoint-every", "5", "--out", out, "--quiet")
    deadline = time.monotonic() + 300
    while not (_position(out)[0] >= 1 and _position(out)[1] > 0):  # a checkpoint inside epoch 2
        assert p.poll() is None and time.monotonic() < deadline, "the run never reached a mid-epoch checkpoint"
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    _finish(cnnlab_process("train", "--resume", out, "--quiet"))

    a, b = load_file(str(reference / WEIGHTS)), load_file(str(out / WEIGHTS))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _records(reference) == _records(out)


@pytest.mark.slow
def test_segmentation_on_two_processes_counts_every_pixel_once(tmp_path: Path) -> None:
    args = [*ARGS[:ARGS.index("--epochs")], "--epochs", "1", "--batch-size", "64", "--seed", "5"]
    doc = json.loads(_finish(cnnlab_process("train", *args, "--nproc", "2", "--out", tmp_path / "two", "--json")))
    run = Run.load(tmp_path / "two")
    assert run.config.nproc == 2 and run.task.name == "segment"
    epoch = next(m for m in run.metrics() if m["event"] == "epoch")
    assert torch.load(tmp_path / "two" / CHECKPOINT, weights_only=True)["position"]["step"] == 32
    assert 0 < epoch["train_pixel_acc"] <= 1  # the sums of correct and labelled pixels of both ranks

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = cnnlab.train(model="fcn", data="shapes", image_size=24, epochs=1, batch_size=64, seed=5,
                           out=tmp_path / "one", quiet=True)
    finally:
        torch.set_num_threads(threads)
    # BatchNorm normalises each rank's half batch on its own, so the runs differ a little
    assert abs(doc["test_miou"] - one.test_result()["test_miou"]) < 0.1, (doc, one.test_result())
    assert abs(epoch["train_pixel_acc"] - one.metrics()[0]["train_pixel_acc"]) < 0.05
