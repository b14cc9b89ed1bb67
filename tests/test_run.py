"""The Python API of a run: load it, use its model, evaluate, predict; safe weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.files import read_weights
from cnnlab.run import BEST, WEIGHTS, Run
from conftest import fresh_copy


def test_loaded_run_exposes_a_plain_module(trained_run: Run, digits) -> None:
    run = cnnlab.Run.load(trained_run.path)
    assert isinstance(run.model, nn.Module) and not run.model.training
    assert run.classes == [str(d) for d in range(10)] and run.input_shape == (1, 28, 28)
    assert run.config.model == "lenet5"
    probs = run.predict(digits.test.x[:5])
    assert probs.shape == (5, 10)
    torch.testing.assert_close(probs.sum(1), torch.ones(5))
    assert run.predict(digits.test.x[0]).shape == (1, 10)  # one image, no batch dimension


def test_evaluate_matches_the_logged_test_accuracy(trained_run: Run) -> None:
    evaluation = Run.load(trained_run.path).evaluate()
    assert evaluation.accuracy == pytest.approx(trained_run.metrics()[-1]["test_acc"])
    cm = evaluation.confusion
    assert (cm.trace() / cm.sum()).item() == pytest.approx(evaluation.accuracy)
    for (t, p, n) in evaluation.most_confused:
        assert t != p and cm[t, p] == n


def test_best_weights_are_the_best_validation_epoch(trained_run: Run) -> None:
    best_epoch = trained_run.metrics()[-1]["best_epoch"]
    val = [m["val_acc"] for m in trained_run.metrics() if m["event"] == "epoch"]
    assert val[best_epoch - 1] == max(val)
    best = Run.load(trained_run.path, weights="best")
    data = best.load_data()
    from cnnlab.tasks.classify import evaluate

    assert evaluate(best.model, data.val.x, data.val.y, data.classes).accuracy == pytest.approx(max(val))


def test_weights_are_safetensors_with_their_description(trained_run: Run) -> None:
    state, meta = read_weights(trained_run.path / WEIGHTS)
    assert meta == {"model": "lenet5", "input_shape": [1, 28, 28], "classes": trained_run.classes}
    assert sum(v.numel() for k, v in state.items() if "normalize" not in k) == 61_706


def test_a_corrupt_weights_file_is_one_sentence(trained_run: Run, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(trained_run.path, copy)
    (copy / BEST).write_bytes(b"\x80\x04 a pickle would run code here")
    with pytest.raises(CnnlabError, match="is not a readable safetensors file"):
        Run.load(copy, weights="best")


def test_weights_of_another_model_do_not_load(trained_run: Run, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(trained_run.path, copy)
    text = (copy / "config.toml").read_text().replace('model = "lenet5"', 'model = "mlp"')
    (copy / "config.toml").write_text(text)
    with pytest.raises(CnnlabError, match="do not fit this model"):
        Run.load(copy)


def test_predict_refuses_the_wrong_shape(trained_run: Run) -> None:
    with pytest.raises(CnnlabError, match="the input has images of shape 3x28x28 but run .* expects 1x28x28"):
        trained_run.predict(torch.rand(2, 3, 28, 28))


def test_custom_module_trains_and_reloads(digits, tmp_path: Path) -> None:
    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 8, 5, stride=2)
            self.fc = nn.Linear(8 * 12 * 12, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu(self.conv(x)).flatten(1))

    run = cnnlab.train(model=Tiny(), data=digits, epochs=2, batch_size=32, out=tmp_path / "r", quiet=True)
    assert run.config.model == "custom:Tiny"
    with pytest.raises(CnnlabError, match=r"pass an instance: Run.load\(path, model=...\)"):
        Run.load(run.path)
    again = Run.load(run.path, model=Tiny())
    torch.testing.assert_close(again.predict(digits.test.x[:4]), run.predict(digits.test.x[:4]))
    with pytest.raises(CnnlabError, match="outputs shape"):
        cnnlab.train(model=nn.Sequential(nn.Flatten(), nn.Linear(784, 3)), data=digits, out=tmp_path / "x", quiet=True)


def test_build_and_load_data_from_python(digits) -> None:
    model = cnnlab.build_model("resnet20", digits.input_shape, digits.num_classes, *digits.stats())
    assert model(digits.train.x[:2]).shape == (2, 10)
    with pytest.raises(CnnlabError, match="did you mean"):
        cnnlab.build_model("resnet21")


def test_provenance_is_json_with_hashes(trained_run: Run, digits) -> None:
    prov = json.loads((trained_run.path / "provenance.json").read_text())
    assert prov["data"]["sha256"] == digits.sha256()
    assert prov["data"]["licence"] and prov["data"]["source"]


def test_a_run_on_data_handed_in_never_analyses_other_data(digits, tmp_path: Path, cli) -> None:
    from cnnlab.data import Dataset, Split

    half = Dataset("digits", digits.classes, Split(digits.train.x[:400], digits.train.y[:400]), digits.val, digits.test)
    run = cnnlab.train(model="lenet5", data=half, epochs=1, batch_size=64, out=tmp_path / "half", quiet=True)
    assert run.config.data == "digits"  # the name alone would load all the digits: other data
    with pytest.raises(CnnlabError, match="SHA-256 differs"):
        Run.load(run.path).load_data()
    # handed in again, it works: the saved weights score the data as the trained model does
    assert Run.load(run.path).evaluate(half).accuracy == run.evaluate(half).accuracy
    result = cli("evaluate", run.path)
    assert result.code == 1 and "pass that data explicitly" in result.err and "Traceback" not in result.err


# -- results of analyses: Run.test_result, Run.results / save_result ---------------------------

def test_test_result_is_the_last_test_record(trained_run: Run, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(trained_run.path, tmp_path / "run"))
    records = [json.loads(line) for line in (copy / "metrics.jsonl").read_text().splitlines()]
    assert Run.load(copy).test_result() == records[-1] and records[-1]["event"] == "test"
    again = {**records[-1], "test_acc": 0.125}  # a second test (say, after a resume) replaces the first
    with open(copy / "metrics.jsonl", "a") as f:
        f.write(json.dumps(again) + "\n" + json.dumps({"event": "note"}) + "\n")
    assert Run.load(copy).test_result() == again
    epochs = [r for r in records if r["event"] != "test"]
    (copy / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in epochs))
    assert Run.load(copy).test_result() is None  # not finished: no test yet


def test_results_round_trip_in_the_files_the_analyses_always_used(trained_run: Run, tmp_path: Path) -> None:
    run = Run.load(fresh_copy(trained_run, tmp_path / "run"))
    assert run.results("audit/bias") is None
    doc = {"groups": "class", "by_group": [{"group": "0", "accuracy": 0.5}], "n": 3}
    path = run.save_result("audit/bias", doc)
    assert path == run.path / "audit" / "bias.json"
    assert json.loads(path.read_text()) == doc and run.results("audit/bias") == doc
    deep = run.save_result("attack/pgd-linf/robustness", {"points": []})
    assert deep == run.path / "attack" / "pgd-linf" / "robustness.json"
    assert Run.load(run.path).results("attack/pgd-linf/robustness") == {"points": []}
    assert [p.name for p in (run.path / "audit").iterdir()] == ["bias.json"]  # no temporary file left


@pytest.mark.parametrize("kind", ["", "../escape", "audit//bias", "/etc/passwd", "audit/.."])
def test_a_result_kind_stays_inside_the_run(trained_run: Run, kind: str) -> None:
    with pytest.raises(CnnlabError, match="relative name inside the run"):
        trained_run.results(kind)
