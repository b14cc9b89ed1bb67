"""The `cnnlab` command: every command's --json document, and errors as one sentence."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from PIL import Image

from cnnlab.config import TrainConfig
from cnnlab.run import Run
from conftest import cnnlab_process

MODELS = ["logistic", "mlp", "lenet5", "alexnet", "vgg11", "vgg16", "resnet20", "resnet56", "resnet18", "resnet50"]


def _png(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray((pixels * 255).round().astype(np.uint8)).save(path)
    return path


def test_help_lists_the_commands(cli) -> None:
    r = cli("--help")
    assert r.code == 0
    for command in ("quickstart", "train", "evaluate", "predict", "summary", "models", "datasets", "report"):
        assert command in r.out


def test_models_json_lists_the_registry(cli) -> None:
    r = cli("models", "--json")
    assert r.code == 0
    models = {m["name"]: m for m in json.loads(r.out)["models"]}
    assert set(MODELS) <= set(models)
    assert models["lenet5"]["reference_params"] == 61_706
    assert models["resnet18"]["reference_input"] == "3x224x224"


def test_datasets_json(cli) -> None:
    r = cli("datasets", "--json")
    names = [d["name"] for d in json.loads(r.out)["datasets"]]
    assert {"digits", "fashion-mnist", "mnist", "cifar10", "imagefolder:PATH"} <= set(names)


def test_summary_lenet5_json(cli) -> None:
    r = cli("summary", "lenet5", "--json")
    assert r.code == 0, r.err
    s = json.loads(r.out)
    assert s["params"] == 61_706 and s["input_shape"] == [1, 28, 28]
    # multiply-adds: conv1 6*28*28*25, conv2 16*10*10*150, fc 400*120 + 120*84 + 84*10; a MAC is 2 FLOPs
    assert s["flops"] == 2 * (117_600 + 240_000 + 48_000 + 10_080 + 840)
    convs = [layer for layer in s["layers"] if layer["type"] == "Conv2d"]
    assert [c["output_shape"] for c in convs] == [[6, 28, 28], [16, 10, 10]]
    assert convs[0]["params"] == 6 * 25 + 6 and convs[0]["chosen"] == "1->6, 5x5, stride 1, pad 2"


def test_summary_resnet18_imagenet_json(cli) -> None:
    r = cli("summary", "resnet18", "--input", "3x224x224", "--classes", "1000", "--json")
    assert r.code == 0, r.err
    s = json.loads(r.out)
    assert s["params"] == 11_689_512
    assert 3.6e9 < s["flops"] < 3.7e9  # 1.82 GMACs, as usually quoted for ResNet-18


def test_summary_of_a_run_lists_hyperparameters_apart(cli, trained_run: Run) -> None:
    r = cli("summary", trained_run.path, "--json")
    s = json.loads(r.out)
    assert s["params"] == 61_706
    assert s["hyperparameters"]["batch_size"] == 32 and s["hyperparameters"]["optimizer"] == "sgd"
    r = cli("summary", trained_run.path)
    assert "chosen hyperparameters" in r.out and "61,706" in r.out


def test_evaluate_json_and_files(cli, trained_run: Run) -> None:
    r = cli("evaluate", trained_run.path, "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    test_acc = trained_run.metrics()[-1]["test_acc"]
    assert doc["accuracy"] == pytest.approx(test_acc, abs=1e-9)
    assert list(doc["per_class"]) == trained_run.classes
    assert {"precision", "recall", "f1", "support"} <= doc["per_class"]["0"].keys()
    assert np.array(doc["confusion"]).sum() == doc["n"] == len(trained_run.load_data().test)
    for name in ("confusion", "misclassified", "evaluation"):
        assert Path(doc["files"][name]).is_file(), name
    assert Image.open(doc["files"]["confusion"]).format == "PNG"


def test_predict_top_k_on_real_image_files(cli, trained_run: Run, tmp_path: Path, digits) -> None:
    files = [_png(tmp_path / f"d{i}.png", digits.test.x[i, 0].numpy()) for i in range(3)]
    r = cli("predict", trained_run.path, *files, "-k", "2", "--json")
    assert r.code == 0, r.err
    preds = json.loads(r.out)["predictions"]
    assert [p["image"] for p in preds] == [str(f) for f in files]
    for p in preds:
        probs = [t["probability"] for t in p["top"]]
        assert len(probs) == 2 and probs[0] >= probs[1] and sum(probs) <= 1 + 1e-6
        assert p["top"][0]["class"] in trained_run.classes
    # a PNG round trip (uint8) changes pixels by < 1/255: the predicted class stays the model's
    expected = trained_run.predict(digits.test.x[:3]).argmax(1).tolist()
    assert [trained_run.classes.index(p["top"][0]["class"]) for p in preds] == expected


def test_report_json_writes_html(cli, trained_run: Run) -> None:
    cli("evaluate", trained_run.path)
    r = cli("report", trained_run.path, "--json")
    html = Path(json.loads(r.out)["report"]).read_text()
    for section in ("Training", "Evaluation", "Model summary", "Chosen hyperparameters", "Provenance"):
        assert section in html
    assert html.count("data:image/png;base64,") >= 3  # curves, confusion matrix, misclassified


def test_train_json(cli, tmp_path: Path) -> None:
    r = cli("train", "--model", "logistic", "--data", "digits", "--epochs", "1", "--out", tmp_path / "r", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)  # the whole stdout is one JSON document: no progress mixed in
    assert doc["run"] == str(tmp_path / "r") and 0 < doc["test_acc"] <= 1 and doc["config"]["epochs"] == 1


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--model", "lenet", "--data", "digits"], "unknown model 'lenet'; did you mean lenet5"),
        (["train", "--model", "lenet5", "--data", "fashon-mnist"], "did you mean fashion-mnist"),
        (["summary", "resnet", "--json"], "did you mean"),
        (["summary", "lenet5", "--input", "28x28"], "--input must look like 3x32x32"),
        (["train", "--model", "lenet5", "--data", "mnist"], "mnist is not on this machine"),
        (["evaluate", "no/such/run"], "no/such/run is not a cnnlab run"),
        (["train", "--resume", "no/such/run"], "no/such/run is not a cnnlab run"),
        (["train", "--optimizer", "rmsprop"], "optimizer must be one of sgd, adam, adamw"),
        (["train", "--config", "missing.toml"], "config file missing.toml does not exist"),
    ],
)
def test_user_errors_are_one_sentence(cli, args: list[str], message: str) -> None:
    r = cli(*args)
    assert r.code == 1
    assert r.out == ""
    assert r.err.startswith("error: ") and message in r.err
    assert len(r.err.strip().splitlines()) == 1 and r.err.strip().endswith(".")


def test_corrupt_and_missing_images_are_named(cli, trained_run: Run, tmp_path: Path) -> None:
    bad = tmp_path / "cat.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    r = cli("predict", trained_run.path, bad)
    assert r.code == 1 and "cannot read image" in r.err and str(bad) in r.err
    r = cli("predict", trained_run.path, tmp_path / "nowhere.png")
    assert r.code == 1 and "nowhere.png" in r.err


def test_a_run_that_does_not_fit_the_data_is_refused(cli, trained_run: Run, tmp_path: Path) -> None:
    # an image folder of RGB images, 3 classes: neither channels nor classes fit a digits run
    for k in range(3):
        (tmp_path / "pets" / f"class{k}").mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (28, 28), (80 * k, 20 * i, 200)).save(tmp_path / "pets" / f"class{k}" / f"{i}.png")
    r = cli("evaluate", trained_run.path, "--data", f"imagefolder:{tmp_path / 'pets'}")
    assert r.code == 1
    assert "has images of shape 3x28x28 but run lenet5-digits expects 1x28x28" in r.err


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    p = cnnlab_process("--debug", "evaluate", tmp_path / "nothing")
    _, err = p.communicate(timeout=60)
    assert p.returncode != 0 and "Traceback" in err and "CnnlabError" in err
    p = cnnlab_process("evaluate", tmp_path / "nothing")
    _, err = p.communicate(timeout=60)
    assert p.returncode == 1 and "Traceback" not in err


def test_version(cli) -> None:
    import cnnlab

    r = cli("--version")
    assert r.code == 0 and r.out.strip() == cnnlab.__version__


def test_every_train_config_field_is_a_train_flag_with_its_help(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer.main

    from cnnlab.cli import app

    train = typer.main.get_command(app).commands["train"]
    options = {p.name: p for p in train.params}
    monkeypatch.setenv("COLUMNS", "200")  # one line per option, so each name shows whole
    shown = cli("train", "--help").out
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in options[f.name].opts and options[f.name].default is None, f.name
        assert f.metadata["help"] and options[f.name].help == f.metadata["help"], f.name
        assert flag in shown, f.name
    assert options["tta"].secondary_opts == ["--no-tta"] and options["dp"].secondary_opts == []
    own = {"config", "out_dir", "overwrite", "resume", "quiet", "as_json"}
    assert set(options) - {f.name for f in fields(TrainConfig)} == own


def test_flags_win_over_the_config_file_and_keep_its_other_values(cli, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(tomli_w.dumps({"model": "logistic", "data": "digits", "epochs": 3, "seed": 7, "tta": True, "lr": 0.02}))
    # --epochs 10 is TrainConfig's default: given, it still beats the file's 3
    r = cli("train", "--config", config, "--epochs", "1", "--no-tta", "--budget", "90s", "--out", tmp_path / "r", "--json")
    assert r.code == 0, r.err
    saved = tomllib.loads((tmp_path / "r" / "config.toml").read_text())
    assert (saved["epochs"], saved["tta"], saved["budget"]) == (1, False, 90.0)  # the flags
    assert (saved["model"], saved["seed"], saved["lr"]) == ("logistic", 7, 0.02)  # the file
    assert saved["batch_size"] == TrainConfig().batch_size  # neither: the default


def test_a_flag_at_its_default_value_still_counts_as_given(cli, tmp_path: Path) -> None:
    """`--recipe fast` fills in only what the user did not say, even where they said the default."""
    args = ["train", "--model", "logistic", "--recipe", "fast", "--epochs", "1", "--json"]
    chosen = json.loads(cli(*args, "--out", tmp_path / "a").out)["config"]
    given = json.loads(cli(*args, "--batch-size", "128", "--out", tmp_path / "b").out)["config"]
    assert chosen["batch_size"] != 128 and given["batch_size"] == 128 == TrainConfig().batch_size


def test_an_explicit_data_dir_that_does_not_exist_is_refused(cli, tmp_path: Path) -> None:
    r = cli("train", "--data", "fashion-mnist", "--data-dir", tmp_path / "no-such-folder", "--out", tmp_path / "r")
    assert r.code == 1 and r.err == (f"error: data folder {tmp_path / 'no-such-folder'} does not exist; "
                                     "create it, or drop --data-dir to use the usual places.\n")
    assert not (tmp_path / "r").exists()


def test_compare_writes_its_plots_under_runs_compare(cli, trained_run: Run, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = cli("compare", trained_run.path, "--json")
    assert r.code == 0, r.err
    figures = json.loads(r.out)["figures"]
    assert sorted(figures.values()) == [f"runs/compare/accuracy_vs_{x}.png" for x in ("energy", "params", "prediction_energy", "size")]
    assert all((tmp_path / f).is_file() for f in figures.values())


def test_help_imports_no_torch() -> None:
    """`cnnlab --help` and `cnnlab train --help` answer without loading torch (seconds of start-up)."""
    code = ("import sys\nfrom cnnlab.cli import main\nfor args in (['--help'], ['train', '--help']):\n"
            "    sys.argv = ['cnnlab', *args]\n    try:\n        main()\n    except SystemExit:\n        pass\n"
            "print('torch' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "--batch-size" in done.stdout and done.stderr.strip() == "False"


def test_training_a_classifier_imports_none_of_the_heavy_libraries_of_other_tasks() -> None:
    """`cnnlab train` imports every registered dataset, model and task to find names; one of them
    importing torchvision (or matplotlib, scipy, PyAV...) at its top cost every training ~1.4 s."""
    code = ("import sys\nfrom cnnlab.data import dataset_entries\nfrom cnnlab.models import build_model\n"
            "from cnnlab.tasks import get_task, task_names\nimport cnnlab.cli.app, cnnlab.training\n"
            "dataset_entries()\nbuild_model('lenet5', (1, 28, 28), 10)\nget_task('classify', list('0123456789'))\n"
            "task_names()\n"
            "heavy = ('torchvision', 'matplotlib', 'scipy', 'av', 'torchmetrics', 'pycocotools', 'captum', 'opacus', 'fastapi')\n"
            "print(sorted(m for m in heavy if m in sys.modules), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr
