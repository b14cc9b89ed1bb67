"""`cnnlab bench`: counted FLOPs of a training step, fraction of the measured peak, the breakdown.

No test asserts a time or a speed: the machine may be busy. They check the counting, the
arithmetic between the numbers, and what a user reads (JSON keys, errors).
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cnnlab.bench import KINDS, Peak, bench, bench_target, count_flops, gemm_shapes, make_step, matmul_peak
from cnnlab.models import build_model
from cnnlab.run import Run

FAKE_PEAK = Peak(gflops=100.0, n=1024, threads=1, seconds=0.0215)  # skips the 1-2 s measurement


def tiny_net() -> nn.Module:
    # (4, 3, 8, 8) -> conv 3->4 3x3 (4, 4, 6, 6) -> conv 4->5 3x3 (4, 5, 4, 4) -> 80 -> 3
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=False), nn.ReLU(), nn.Conv2d(4, 5, 3, bias=False), nn.Flatten(), nn.Linear(80, 3, bias=False)
    )


def test_step_flops_are_forward_plus_backward_counted_by_hand() -> None:
    batch = 4
    conv1 = 2 * batch * (4 * 6 * 6) * (3 * 3 * 3)  # 2 x outputs x (C_in k k) multiply-adds
    conv2 = 2 * batch * (5 * 4 * 4) * (4 * 3 * 3)
    linear = 2 * batch * 80 * 3
    forward = conv1 + conv2 + linear
    # backward: the first layer needs only its weight gradient (the pixels need none); the
    # others a gradient w.r.t. their input and one w.r.t. their weight, each as costly as forward
    backward = conv1 + 2 * conv2 + 2 * linear
    x, y = torch.rand(batch, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    total, per_op = count_flops(make_step(tiny_net(), x, y))
    assert total == forward + backward
    assert per_op["convolution"] == conv1 + conv2 and per_op["convolution_backward"] == conv1 + 2 * conv2


def test_lenet5_convolutions_are_thin_matrix_products() -> None:
    gemms = {g.layer: g for g in gemm_shapes(build_model("lenet5", (1, 28, 28), 10), (1, 28, 28), 32)}
    conv1, conv2 = gemms["net.features.conv1"], gemms["net.features.conv2"]
    assert (conv1.m, conv1.k, conv1.n) == (32 * 28 * 28, 25, 6)
    assert (conv2.m, conv2.k, conv2.n) == (32 * 10 * 10, 150, 16)
    assert gemms["net.classifier.fc1"].k == 400 and gemms["net.classifier.fc1"].n == 120
    # the summary's forward FLOPs per image, times the batch
    assert sum(g.flops for g in gemms.values()) == 32 * 2 * (117_600 + 240_000 + 48_000 + 10_080 + 840)


def test_fraction_is_achieved_over_peak_and_breakdown_sums_to_the_step() -> None:
    torch.manual_seed(0)
    r = bench(tiny_net(), (3, 8, 8), 3, batch_size=4, steps=2, warmup=1, profile_steps=2, peak=FAKE_PEAK)
    assert r.flops_per_step == count_flops(make_step(tiny_net(), torch.rand(4, 3, 8, 8), torch.zeros(4, dtype=torch.long)))[0]
    assert r.gflops == pytest.approx(r.flops_per_step / r.step_seconds / 1e9)
    assert r.fraction_of_peak == pytest.approx(r.gflops / 100.0)
    assert r.images_per_s == pytest.approx(4 / r.step_seconds)
    assert r.step_seconds <= r.step_seconds_median
    kinds = {k.kind: k for k in r.breakdown}
    assert list(kinds) == list(KINDS)
    assert all(k.ms >= 0 for k in r.breakdown)
    # every operator of the profiled steps is filed once, so the shares of the profiled wall
    # time add up to 1, and the kinds to the timed step
    assert sum(k.share for k in r.breakdown) == pytest.approx(1.0, rel=1e-6)
    assert sum(k.ms for k in r.breakdown) == pytest.approx(r.step_seconds * 1e3, rel=1e-6)
    assert r.profiled_step_ms > 0
    assert kinds["convolution"].ms > 0 and kinds["optimizer"].ms > 0 and kinds["activation"].ms > 0
    assert kinds["pooling"].ms == 0 and kinds["batch-norm"].ms == 0  # the net has neither
    assert kinds["convolution"].flops + kinds["matmul/linear"].flops == r.flops_per_step
    assert kinds["convolution"].fraction_of_peak == pytest.approx(kinds["convolution"].gflops / 100.0)


def test_matmul_peak_reports_its_size_and_threads() -> None:
    p = matmul_peak(sizes=(64, 128), repeats=2)
    assert p.n in (64, 128) and p.threads == torch.get_num_threads()
    assert p.gflops == pytest.approx(2 * p.n**3 / p.seconds / 1e9)


def test_bench_model_json(cli) -> None:
    r = cli("bench", "lenet5", "--batch-size", "16", "--steps", "2", "--threads", "1", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["model"] == "lenet5" and doc["source"] == "registry" and doc["input_shape"] == [1, 28, 28]
    assert doc["threads"] == 1 and doc["peak"]["threads"] == 1 and doc["peak"]["n"] in (1024, 1536, 2048)
    assert doc["fraction_of_peak"] == pytest.approx(doc["gflops"] / doc["peak"]["gflops"])
    # LeNet-5's 0.83 MFLOP forward per image (see test_cli) and a backward that skips the pixels' gradient
    forward = 16 * 2 * (117_600 + 240_000 + 48_000 + 10_080 + 840)
    assert forward * 2 < doc["flops_per_step"] < forward * 3
    assert [k["kind"] for k in doc["breakdown"]] == list(KINDS)
    assert {g["layer"] for g in doc["gemms"]} >= {"net.features.conv1", "net.classifier.fc3"}


def test_bench_a_run_and_the_tables(cli, trained_run: Run) -> None:
    r = cli("bench", trained_run.path, "--batch-size", "8", "--steps", "1", "--threads", "1", "--clock", "cpu", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["source"] == str(trained_run.path) and doc["model"] == "lenet5"
    assert doc["clock"] == "cpu" and doc["peak"]["clock"] == "cpu"
    assert doc["input_shape"] == list(trained_run.input_shape) and doc["classes"] == len(trained_run.classes)
    r = cli("bench", trained_run.path, "--batch-size", "8", "--steps", "1", "--channels-last")
    assert r.code == 0, r.err
    assert "of peak" in r.out and "channels_last" in r.out and "convolution" in r.out and "overhead" in r.out


def test_bench_target_measures_on_its_threads_and_gives_them_back(trained_run: Run) -> None:
    before = torch.get_num_threads()  # 2 in the tests (conftest)
    r = bench_target(trained_run.path, threads=1, batch_size=4, steps=1)
    assert r.threads == 1 and r.peak.threads == 1 and torch.get_num_threads() == before
    assert r.source == str(trained_run.path) and r.channels_last == trained_run.config.channels_last


def test_bench_input_shape_of_a_dataset(cli) -> None:
    r = cli("bench", "logistic", "--data", "digits", "--batch-size", "8", "--steps", "1", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["input_shape"] == [1, 28, 28] and doc["classes"] == 10
    assert doc["breakdown"][0]["flops"] == 0  # no convolution in logistic regression


@pytest.mark.parametrize(
    "args, says",
    [
        (["lenet"], "unknown model 'lenet'; did you mean lenet5"),
        (["resnet20", "--input", "3x32"], "--input must look like 3x32x32"),
        (["lenet5", "--steps", "0"], "--steps must be at least 1"),
        (["lenet5", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["lenet5", "--threads", "0"], "--threads must be at least 1"),
        (["lenet5", "--data", "digits", "--input", "1x28x28"], "give --data or --input, not both"),
        (["lenet5", "--input", "1x4x4"], "lenet5 needs images of at least 12x12"),
        (["lenet5", "--clock", "gpu"], "--clock must be wall or cpu"),
    ],
)
def test_errors_are_one_sentence(cli, args: list[str], says: str) -> None:
    r = cli("bench", *args)
    assert r.code == 1 and says in r.err
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err


def test_errors_about_folders(cli, trained_run: Run, tmp_path) -> None:
    r = cli("bench", tmp_path)
    assert r.code == 1 and "not a cnnlab run" in r.err
    r = cli("bench", trained_run.path, "--input", "1x28x28")
    assert r.code == 1 and "drop --data/--input" in r.err
