"""Pruning, int8 and distillation of a real (tiny) digits run; derived runs open in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.compress.distill import distillation_loss
from cnnlab.errors import CnnlabError


def fresh_process_accuracy(run: Path) -> float:
    """`cnnlab evaluate RUN --json` in a new Python process: nothing in this one's memory helps."""
    exe = Path(sys.executable).with_name("cnnlab")
    done = subprocess.run([str(exe), "evaluate", str(run), "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["accuracy"]


def test_int8_is_smaller_loads_in_a_fresh_process_and_keeps_accuracy(trained_run, tmp_path, cli):
    from cnnlab.compress.quantize import quantize_run
    from cnnlab.run import Run

    q = quantize_run(trained_run, tmp_path / "int8")
    fp32_bytes = (trained_run.path / "model.safetensors").stat().st_size
    int8_bytes = (q.path / "model.safetensors").stat().st_size
    assert int8_bytes <= 0.3 * fp32_bytes
    assert q.model.get_submodule("net.features.conv1").weight.dtype == torch.int8
    parent_acc, int8_acc = trained_run.test_result()["test_acc"], q.test_result()["test_acc"]
    assert int8_acc >= parent_acc - 0.03  # 360 test digits: 0.03 is 11 images
    provenance = json.loads((q.path / "provenance.json").read_text())
    assert provenance["derived"]["method"] == "quantize" and provenance["derived"]["parent"] == str(trained_run.path)
    assert fresh_process_accuracy(q.path) == pytest.approx(int8_acc)
    assert cli("verify", q.path, "--json").code == 0
    flops = [json.loads(cli("summary", path, "--json").out)["flops"] for path in (trained_run.path, q.path)]
    assert flops[0] == flops[1] > 0  # the same multiply-adds, counted in the int8 kernels too
    probs = Run.load(q.path).predict(trained_run.load_data().test.x[:4])
    assert torch.allclose(probs.sum(1), torch.ones(4), atol=1e-5)


def test_int8_folds_batchnorm_and_matches_the_float_model():
    from cnnlab.compress.quantize import quantize_model
    from cnnlab.models import build_model

    torch.manual_seed(0)
    model = build_model("fastnet", (1, 16, 16), 10).eval()
    for m in model.modules():  # statistics as after training, so folding them matters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    x = torch.rand(256, 1, 16, 16)
    q, layers = quantize_model(model, x)
    assert {layers[n]["kind"] for n in layers if "bn" in n} == {"identity"}
    with torch.no_grad():
        agree = (q(x).argmax(1) == model(x).argmax(1)).float().mean()
    assert agree >= 0.9


def test_unstructured_pruning_keeps_its_zeros_through_fine_tuning(trained_run, tmp_path):
    from cnnlab.compress.prune import prune_run, sparsity
    from cnnlab.run import Run

    pruned = prune_run(trained_run, tmp_path / "pruned", amount=0.5, epochs=1, quiet=True)
    assert sparsity(pruned.model) == pytest.approx(0.5, abs=1e-4)
    reloaded = Run.load(pruned.path)
    assert sparsity(reloaded.model) == pytest.approx(0.5, abs=1e-4)  # permanent: plain weights with zeros in the file
    assert set(reloaded.model.state_dict()) == set(trained_run.model.state_dict())
    assert reloaded.evaluate().accuracy == pytest.approx(pruned.test_result()["test_acc"])
    doc = json.loads((pruned.path / "provenance.json").read_text())
    doc["finished"] = None  # as a kill in its fine-tuning leaves it
    (pruned.path / "provenance.json").write_text(json.dumps(doc))
    with pytest.raises(CnnlabError, match=r"fine-tuned by `cnnlab compress` \(prune\), which this resume cannot repeat"):
        cnnlab.resume(pruned.path)  # it would train on without the masks, regrowing the pruned weights


def test_structured_pruning_shrinks_layers_and_flops(trained_run, tmp_path, cli):
    from cnnlab.compress.prune import prune_run
    from cnnlab.run import Run
    from cnnlab.summary import summarize

    pruned = prune_run(trained_run, tmp_path / "channels", amount=0.5, structured=True, quiet=True)
    reloaded = Run.load(pruned.path)
    assert reloaded.config.epochs == trained_run.config.epochs == 4  # half the channels: as long a training as the parent's
    conv1, conv2 = (reloaded.model.get_submodule(f"net.features.conv{i}") for i in (1, 2))
    assert (conv1.out_channels, conv2.in_channels, conv2.out_channels) == (3, 3, 8)
    assert reloaded.model.get_submodule("net.classifier.fc1").in_features == 8 * 25
    before, after = (summarize(m, trained_run.input_shape) for m in (trained_run.model, reloaded.model))
    assert after.flops < 0.6 * before.flops and after.params < before.params
    result = cli("summary", pruned.path, "--json")
    assert result.code == 0 and json.loads(result.out)["flops"] == after.flops
    assert reloaded.evaluate().accuracy == pytest.approx(pruned.test_result()["test_acc"])
    doc = json.loads((pruned.path / "provenance.json").read_text())
    doc["finished"] = None  # as a kill after its last checkpoint leaves it
    (pruned.path / "provenance.json").write_text(json.dumps(doc))
    assert cnnlab.resume(pruned.path, quiet=True).finished  # shrunk layers need no rule of compress's to go on


def test_distillation_loss_by_hand():
    student = torch.tensor([[2.0, 0.0]])
    y = torch.tensor([0])
    # a student that already says what the teacher says: only the labels' term is left
    ce = torch.log(1 + torch.exp(torch.tensor(-2.0)))
    assert distillation_loss(student, student.clone(), y, 2.0, 0.75).item() == pytest.approx(0.25 * ce.item(), rel=1e-5)
    # teacher (0, 0) at T = 2: KL(uniform || softmax(1, 0)) = log 0.5 - 0.5 log p0 - 0.5 log p1 with p = softmax(1, 0)
    p = torch.softmax(torch.tensor([1.0, 0.0]), 0)
    kl = (torch.log(torch.tensor(0.5)) - 0.5 * torch.log(p).sum()).item()
    assert distillation_loss(student, torch.zeros(1, 2), y, 2.0, 1.0).item() == pytest.approx(4 * kl, rel=1e-5)


def test_distilled_run_points_to_teacher_and_parent(trained_run, tmp_path):
    from cnnlab.compress.distill import distill_run
    from cnnlab.run import Run

    run = distill_run(trained_run, trained_run, tmp_path / "student", temperature=3.0, alpha=0.5, epochs=1, quiet=True)
    derived = Run.load(run.path).provenance["derived"]
    assert derived == {"method": "distill", "teacher": str(trained_run.path), "temperature": 3.0, "alpha": 0.5,
                       "parent": str(trained_run.path)}
    assert run.config.epochs == 1 and run.test_result()["test_acc"] > 0.2  # one epoch from scratch: above chance (0.1)


def test_a_damaged_derivation_is_one_sentence(trained_run, tmp_path):
    from cnnlab.compress.quantize import quantize_run
    from cnnlab.run import Run

    q = quantize_run(trained_run, tmp_path / "int8")
    doc = json.loads((q.path / "provenance.json").read_text())
    doc["derived"]["layers"]["net.features.conv1"]["kind"] = "teleport"
    (q.path / "provenance.json").write_text(json.dumps(doc))
    with pytest.raises(CnnlabError, match="derived.layers.net.features.conv1 has no kind"):
        Run.load(q.path)


def test_compress_cli_needs_exactly_one_method(trained_run, tmp_path, cli):
    result = cli("compress", trained_run.path, "--out", tmp_path / "x")
    assert result.code == 1 and "exactly one of --prune, --quantize or --distill" in result.err
    result = cli("compress", trained_run.path, "--out", tmp_path / "x", "--quantize", "int4")
    assert result.code == 1 and "int8" in result.err
