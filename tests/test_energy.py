"""Energy (CodeCarbon offline, per stage), size and speed, and `cnnlab compare`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import cnnlab
from cnnlab import energy
from cnnlab.audit.size import measure_size
from cnnlab.run import WEIGHTS, Run


@pytest.fixture
def measuring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNLAB_ENERGY", "1")


def test_a_stage_is_measured_offline_with_its_method(measuring, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CNNLAB_COUNTRY", "fra")
    with energy.track(tmp_path, "busy") as record:
        sum(i * i for i in range(300_000))
    assert record["energy_kwh"] > 0 and record["emissions_kg_co2eq"] > 0 and record["duration_s"] > 0
    assert record["country"] == "FRA" and record["method_kind"] in ("rapl", "load")
    assert ("RAPL" in record["method"]) == (record["method_kind"] == "rapl") and record["uncertainty"]
    assert energy.read(tmp_path) == [record]
    with energy.track(tmp_path, "busy"):
        pass
    assert energy.total(tmp_path, "busy")["records"] == 2


def test_a_codecarbon_failure_never_fails_the_work(measuring, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import codecarbon

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no power source")

    monkeypatch.setattr(codecarbon, "OfflineEmissionsTracker", broken)
    done = []
    with energy.track(tmp_path, "training") as record:
        done.append(True)
    assert done and "no power source" in record["error"] and "energy_kwh" not in record
    assert energy.total(tmp_path, "training") is None and energy.read(tmp_path)[0]["error"] == record["error"]


def test_switched_off_it_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CNNLAB_ENERGY", "0")
    with energy.track(tmp_path, "training") as record:
        pass
    assert record["skipped"] == "CNNLAB_ENERGY=0" and "energy_kwh" not in record


@pytest.fixture(scope="module")
def measured_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A short digits training with energy measured (CodeCarbon on)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CNNLAB_ENERGY", "1")
    try:
        return cnnlab.train(model="logistic", data="digits", epochs=1, out=tmp_path_factory.mktemp("e") / "logistic", quiet=True)
    finally:
        mp.undo()


def test_training_and_evaluation_are_recorded(measured_run: Run) -> None:
    stages = {r["stage"]: r for r in energy.read(measured_run.path)}
    assert set(stages) == {"training", "evaluation"}
    assert all(r["energy_kwh"] > 0 and r["method"] for r in stages.values())


def test_size_of_lenet5(trained_run: Run) -> None:
    s = measure_size(trained_run.model, trained_run.input_shape, trained_run.path / WEIGHTS, latency_repeats=5, throughput_repeats=1)
    assert s["params"] == 61_706 and s["weights_bytes"] == (trained_run.path / WEIGHTS).stat().st_size
    assert s["flops_per_image"] > 2 * 61_706  # convolutions reuse their weights at every position
    assert s["latency_ms_batch1"] > 0 and s["throughput_batch256"] > 0


def test_cli_compare(cli, trained_run: Run, measured_run: Run, tmp_path: Path) -> None:
    runs = []
    for run in (trained_run, measured_run):
        shutil.copytree(run.path, tmp_path / run.name)
        runs.append(tmp_path / run.name)
    r = cli("compare", *runs, "--out", tmp_path / "cmp", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    rows = {row["model"]: row for row in doc["rows"]}
    assert rows["lenet5"]["params"] == 61_706 and rows["logistic"]["params"] == 28 * 28 * 10 + 10
    assert rows["lenet5"]["train_kwh"] is None and rows["lenet5"]["energy_method"] == "not measured"
    assert rows["logistic"]["train_kwh"] > 0 and "CPU" in rows["logistic"]["energy_method"]
    for png in doc["figures"].values():
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (runs[0] / "audit" / "size.json").is_file()
    r = cli("compare", *runs, "--out", tmp_path / "cmp")
    assert r.code == 0 and "not measured" in r.out and "energy method" in r.out and "accuracy_vs_params" in r.out
