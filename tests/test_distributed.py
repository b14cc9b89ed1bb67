"""Multi-process training (DDP, gloo on CPU): real worker processes on the digits.

A 2-process run matches a 1-process run with the same global batch, writes its run from rank 0
alone, survives a SIGKILL of its launcher and resumes exactly; user mistakes are one sentence.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.run import CHECKPOINT, WEIGHTS, Run
from cnnlab.training.distributed import Context

# LeNet-5 on the digits: 1259 training images = 39 global batches of 32 and a last one of 11,
# which the two ranks split 5 / 6 (so the unequal-slice weighting is exercised every epoch);
# random crops use the augmentation stream (no flips: a mirrored digit is another symbol).
ARGS = ["--model", "lenet5", "--data", "digits", "--epochs", "6", "--batch-size", "32", "--seed", "3",
        "--augment", "crop"]


def _cnnlab(*args: str | Path) -> subprocess.Popen:
    """`cnnlab ARGS` in a session of its own, so a test can kill its whole process group."""
    exe = Path(sys.executable).with_name("cnnlab")
    return subprocess.Popen([str(exe), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _finish(p: subprocess.Popen, timeout: float = 300) -> tuple[str, str]:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    return out, err


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ddp") / "two"
    stdout, _ = _finish(_cnnlab("train", *ARGS, "--nproc", "2", "--out", out, "--json"))
    return out, json.loads(stdout)  # one JSON document: rank 1 printed nothing


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(two_process_run, tmp_path: Path) -> None:
    out, doc = two_process_run
    run = Run.load(out)
    assert run.config.nproc == 2 and run.config.batch_size == 32
    epochs = [m for m in run.metrics() if m["event"] == "epoch"]
    assert [m["epoch"] for m in epochs] == [1, 2, 3, 4, 5, 6]  # rank 0 alone logged
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["best.safetensors", "checkpoint.pt", "config.toml", "energy.json", "metrics.jsonl", "model.safetensors", "provenance.json"]
    )
    # the epoch sums are all-reduced: every training image is counted once per epoch
    state = torch.load(out / CHECKPOINT, weights_only=True)
    assert state["position"]["step"] == 6 * 40

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the two workers: fair on 2 cores, and no thread spinning on a busy machine
    try:
        one = cnnlab.train(model="lenet5", data="digits", epochs=6, batch_size=32, seed=3, augment="crop",
                           out=tmp_path / "one", quiet=True)
    finally:
        torch.set_num_threads(threads)
    one_test = one.metrics()[-1]["test_acc"]
    assert one_test > 0.9  # both learned: the comparison means something
    assert abs(doc["test_acc"] - one_test) <= 0.01, (doc["test_acc"], one_test)
    # the first epoch's steps are the same steps (same batches, same augmentation, same init)
    assert abs(epochs[0]["train_loss"] - one.metrics()[0]["train_loss"]) < 1e-3


def _checkpoint_position(run_dir: Path) -> tuple[int, int]:
    try:
        position = torch.load(run_dir / CHECKPOINT, weights_only=True)["position"]
    except (FileNotFoundError, RuntimeError, EOFError):  # not there yet
        return -1, -1
    return position["epoch"], position["batch"]


@pytest.mark.slow
def test_killed_two_process_run_resumes_from_its_last_checkpoint(two_process_run, tmp_path: Path) -> None:
    reference, _ = two_process_run
    out = tmp_path / "run"
    p = _cnnlab("train", *ARGS, "--nproc", "2", "--checkpoint-every", "5", "--out", out, "--quiet")
    deadline = time.monotonic() + 240
    while not (_checkpoint_position(out)[0] >= 2 and _checkpoint_position(out)[1] > 0):  # inside epoch 3
        assert p.poll() is None and time.monotonic() < deadline, "the run never reached a mid-epoch checkpoint"
        time.sleep(0.01)
    os.killpg(p.pid, signal.SIGKILL)  # the launcher; its workers live in sessions of their own
    p.communicate()
    time.sleep(1.0)  # the workers notice their launcher is gone within 0.2 s
    stopped_at = _checkpoint_position(out)
    time.sleep(1.0)
    assert _checkpoint_position(out) == stopped_at, "a worker outlived its launcher and kept training"
    assert not Run.load(out, weights="none").finished

    with pytest.raises(CnnlabError, match="trained on 2 process"):  # one process cannot continue it exactly
        cnnlab.resume(out, quiet=True)

    _finish(_cnnlab("train", "--resume", out, "--quiet"))  # starts 2 processes again, from config.toml
    metrics = Run.load(out).metrics()
    assert [m["epoch"] for m in metrics if m["event"] == "epoch"] == [1, 2, 3, 4, 5, 6]  # each epoch once
    assert [m["event"] for m in metrics].count("test") == 1
    a, b = load_file(str(out / WEIGHTS)), load_file(str(reference / WEIGHTS))
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed run's weights differ from the uninterrupted run's"


@pytest.mark.parametrize(
    "args, says",
    [
        (["--nproc", "0"], "nproc must be at least 1"),
        (["--nproc", "2", "--dp"], "--dp trains in one process"),
        (["--nproc", "40", "--batch-size", "64"], "must be at least 80 (2 images per process)"),
    ],
)
def test_impossible_process_counts_are_one_sentence(cli, args: list[str], says: str, tmp_path: Path) -> None:
    r = cli("train", "--model", "lenet5", "--data", "digits", "--epochs", "1", "--out", tmp_path / "r", *args)
    assert r.code == 1
    assert says in r.err and r.err.startswith("error: ") and r.err.count("\n") == 1
    assert not (tmp_path / "r").exists()  # refused before any process started


def test_python_api_refuses_several_processes_it_cannot_start(tmp_path: Path) -> None:
    with pytest.raises(CnnlabError, match="cnnlab train --nproc 2"):
        cnnlab.train(model="lenet5", data="digits", epochs=1, nproc=2, out=tmp_path / "r", quiet=True)
    assert not (tmp_path / "r").exists()


def test_ranks_split_a_global_batch_and_weight_their_losses_to_its_mean() -> None:
    """Unequal slices (the epoch's last batch): DDP's average of the weighted local means is
    the global batch's mean loss, so the step equals a 1-process step on the whole batch."""
    torch.manual_seed(0)
    x, y = torch.randn(29, 3), torch.randint(0, 4, (29,))
    w = torch.randn(3, 4, requires_grad=True)
    loss = lambda xs, ys: torch.nn.functional.cross_entropy(xs @ w, ys)  # noqa: E731
    whole = torch.autograd.grad(loss(x, y), w)[0]

    averaged = torch.zeros_like(w)
    rows = []
    for rank in range(2):
        ctx = Context(rank=rank, world_size=2)
        xs, ys, none = ctx.shard(x, y, None)
        assert none is None and ctx.global_batch == 29
        rows.append(len(ys))
        averaged += torch.autograd.grad(ctx.global_mean(loss(xs, ys), len(ys)), w)[0] / 2  # what DDP does
    assert rows == [14, 15]
    assert torch.allclose(averaged, whole, atol=1e-6)
