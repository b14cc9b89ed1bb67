"""Runs by name, as the server opens them: a sibling run with a damaged file is one sentence
(4xx) naming the file, never a 500 or a runaway allocation; a name never reaches outside the
served folder; no answer carries the server's own paths."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from safetensors.torch import load_file, save_file

import cnnlab
from cnnlab.data import shapes
from cnnlab.serve import create_app
from test_serve_api import digit_png


def sibling(folder: Path, source: Path, name: str) -> Path:
    """A copy of the run at `source` named `name` in `folder`."""
    shutil.copytree(source, folder / name)
    return folder / name


def edit_provenance(run: Path, change) -> None:  # noqa: ANN001
    doc = json.loads((run / "provenance.json").read_text())
    change(doc)
    (run / "provenance.json").write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def folder(trained_run, tmp_path_factory) -> Path:
    """The served run `good` beside damaged copies of it, and a link that leads outside."""
    root = tmp_path_factory.mktemp("served")
    src = trained_run.path
    sibling(root, src, "good")
    edit_provenance(sibling(root, src, "huge"), lambda d: d["data"].update(input_shape=[1, 100_000, 100_000]))
    edit_provenance(sibling(root, src, "wide"), lambda d: d["data"].update(input_shape=[1, 28, 2000]))
    (sibling(root, src, "badjson") / "provenance.json").write_text('{"data": {')
    (sibling(root, src, "alist") / "provenance.json").write_text("[1, 2]")
    (sibling(root, src, "nodata") / "provenance.json").write_text('{"seed": 0}')
    metrics = (src / "metrics.jsonl").read_text()
    (sibling(root, src, "halfline") / "metrics.jsonl").write_text(metrics + '{"event": "epoch", "epo')
    (sibling(root, src, "garbage") / "metrics.jsonl").write_text("not json at all\n" + metrics)
    nan = sibling(root, src, "nanweights")
    state = load_file(nan / "model.safetensors")
    next(iter(state.values())).fill_(float("nan"))
    save_file(state, nan / "model.safetensors")
    edit_provenance(nan, lambda d: d.pop("weights", None))  # no recorded hash: the values themselves must be checked
    with pytest.MonkeyPatch.context() as small:  # a real segmentation run, of a few tiny scenes
        small.setattr(shapes, "TRAIN_VAL", 40)
        small.setattr(shapes, "TEST", 10)
        cnnlab.train(model="fcn", data="shapes", image_size=24, epochs=1, batch_size=16, out=root / "segmenter", quiet=True)
    outside = tmp_path_factory.mktemp("elsewhere")
    sibling(outside, src, "secret")
    (root / "escape").symlink_to(outside / "secret", target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def client(folder) -> TestClient:
    return TestClient(create_app(folder / "good"))


@pytest.mark.parametrize(("name", "words"), [
    ("huge", "at most 512x512"),
    ("wide", "at most 512x512"),
    ("badjson", "provenance.json"),
    ("alist", "provenance.json"),
    ("nodata", "provenance.json"),
    ("garbage", "metrics.jsonl"),
    ("nanweights", "NaN"),
])
def test_a_damaged_sibling_is_one_sentence_naming_the_file(client, folder, name, words) -> None:
    start = time.monotonic()
    r = client.get("/api/model", params={"run": name})
    assert time.monotonic() - start < 10  # refused before any model is built for 100,000 x 100,000 pixels
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error.startswith(f"run '{name}' cannot be served: ") and words in error
    assert str(folder) not in error and str(folder.parent) not in error  # the server's paths stay on the server


def test_a_cut_last_line_of_metrics_is_dropped(client) -> None:
    r = client.get("/api/model", params={"run": "halfline"})
    assert r.status_code == 200 and 0.5 < r.json()["test_accuracy"] <= 1


def test_a_run_that_is_not_a_classifier_is_served_where_it_can_be(client, digits) -> None:
    png, _ = digit_png(digits)
    r = client.get("/api/model", params={"run": "segmenter"})
    assert r.status_code == 200 and r.json()["task"] == "segment"
    for path in ("/api/predict", "/api/explain", "/api/attack"):
        r = client.post(path, params={"run": "segmenter"}, files={"file": ("d.png", png)})
        assert r.status_code == 400, r.text
        send = "; send its images to /api/segment" if path == "/api/predict" else ""
        assert r.json()["error"] == f"run segmenter learned the segment task; {path} answers for classification runs only{send}."


@pytest.mark.parametrize("name", ["escape", "../good", "..", "/etc", ".", ".hidden", "good/../good", "a\\b", "secret"])
def test_a_run_name_never_leads_outside_the_served_folder(client, name) -> None:
    r = client.get("/api/model", params={"run": name})
    assert r.status_code == 404 and r.json()["error"].startswith(f"unknown run '{name}'")
    assert "escape" not in client.get("/api/runs").json()["runs"]


def test_the_runs_listed_are_the_folders_runs(client) -> None:
    runs = client.get("/api/runs").json()
    assert runs["default"] == "good"
    assert {"good", "huge", "badjson", "nanweights", "segmenter"} <= set(runs["runs"])


def test_serving_a_damaged_run_stops_at_once_with_its_sentence(cli, folder) -> None:
    for name, words in (("huge", "at most 512x512"), ("badjson", "provenance.json"), ("nanweights", "NaN")):
        r = cli("serve", folder / name)
        assert r.code == 1, r.out
        assert r.err.startswith("error: ") and r.err.count("\n") == 1 and words in r.err
        assert "http://" not in r.out


def test_a_500_answer_says_nothing_of_the_failure(folder, monkeypatch) -> None:
    from cnnlab.serve import lab_api

    def broken(served):  # noqa: ANN001, ANN202
        raise RuntimeError(f"secret detail at {folder}")

    monkeypatch.setattr(lab_api, "_describe", broken)
    r = TestClient(create_app(folder / "good"), raise_server_exceptions=False).get("/api/model")
    assert r.status_code == 500
    assert r.json() == {"error": "internal error; the server's log has the details, please report it."}
