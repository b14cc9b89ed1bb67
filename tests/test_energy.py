"""Energy (CodeCarbon offline, or its load-based estimate computed directly, per stage), size and speed, and `cnnlab compare`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

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


def test_without_a_counter_the_estimate_is_codecarbons_own(measuring, tmp_path: Path) -> None:
    """Where CodeCarbon finds no energy counter, its tracker and ours compute the same estimate."""
    if energy.has_counters():
        pytest.skip("this machine has an energy counter: CodeCarbon reads it, there is no estimate to compare")
    stop_codecarbon = energy.start_codecarbon("FRA")
    stop_ours = energy.start_load_estimate("FRA")
    x = torch.rand(600, 600)
    for _ in range(60):
        x = torch.tanh(x @ x)
    ours, theirs = stop_ours(), stop_codecarbon()
    assert theirs["method_kind"] == ours["method_kind"] == "load" and ours["cpu_seconds"] > 0.1
    for key in ("cpu_kwh", "ram_kwh", "energy_kwh", "emissions_kg_co2eq"):
        assert ours[key] == pytest.approx(theirs[key], rel=0.15), key  # ours ends a few ms earlier
    assert ours["cpu_model"] == theirs["cpu_model"]
    tdp = [float(r["method"].split("TDP ")[1].split(" W")[0]) for r in (ours, theirs)]
    assert tdp[0] == tdp[1] > 0


def test_cpu_names_are_matched_as_codecarbon_matches_them() -> None:
    from codecarbon.core.cpu import TDP
    from codecarbon.input import DataSource

    table = DataSource().get_cpu_power_data()
    names = list(table["Name"])
    queries = [energy.cpu_model(), "Intel(R) Xeon(R) Processor", "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz",
               "AMD EPYC 7763 64-Core Processor", "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz", "Apple M1", "ARMv8", ""]
    queries += names[::97] + [n.upper() for n in names[5::401]]
    queries += [n.replace("Intel ", "Intel(R) ") + " CPU @ 2.10GHz" for n in names[::151]]
    codecarbon = TDP.__new__(TDP)  # its matcher alone, without the 1.5 s CPU detection of __init__
    assert [energy.match_cpu(q, names) for q in queries] == [codecarbon._get_matching_cpu(q, table) for q in queries]
    assert energy.match_cpu("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", names) is not None


def test_a_codecarbon_failure_never_fails_the_work(measuring, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import codecarbon

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no power source")

    monkeypatch.setattr(energy, "has_counters", lambda: True)  # CodeCarbon's own tracker is used
    monkeypatch.setattr(codecarbon, "OfflineEmissionsTracker", broken)
    done = []
    with energy.track(tmp_path, "training") as record:
        done.append(True)
    assert done and "no power source" in record["error"] and "energy_kwh" not in record
    assert energy.total(tmp_path, "training") is None and energy.read(tmp_path)[0]["error"] == record["error"]


def test_an_estimate_failure_never_fails_the_work(measuring, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def no_table(model: str) -> None:
        raise FileNotFoundError("cpu_power.csv")

    monkeypatch.setattr(energy, "has_counters", lambda: False)
    monkeypatch.setattr(energy, "cpu_tdp", no_table)
    with energy.track(tmp_path, "training") as record:
        pass
    assert "cpu_power.csv" in record["error"] and "energy_kwh" not in record and record["duration_s"] >= 0
    assert energy.read(tmp_path) == [record]


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
    s = measure_size(trained_run.model, trained_run.input_shape, trained_run.path / WEIGHTS,
                     latency_repeats=5, throughput_repeats=1)
    assert s.params == 61_706 and s.weights_bytes == (trained_run.path / WEIGHTS).stat().st_size
    assert s.flops_per_image > 2 * 61_706  # convolutions reuse their weights at every position
    assert s.latency_ms_batch1 > 0 and s.throughput_batch256 > 0


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
