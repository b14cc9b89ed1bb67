"""Energy and CO2 of each stage of a run (training, evaluation), as CodeCarbon measures them offline.

CodeCarbon (Courty et al., codecarbon.io; Lacoste et al. 2019, "Quantifying the Carbon
Emissions of Machine Learning") integrates power over time. Where the machine has an energy
counter (Intel RAPL for the CPU package, NVML or AMD SMI for GPUs) CodeCarbon reads it, and
here CodeCarbon's tracker runs around the stage. Where there is none (most VMs and containers)
CodeCarbon falls back on a *load-based estimate*: CPU power = the CPU's thermal design power x
this process's share of the CPUs, RAM power from its per-module model. That estimate is a
formula over the process's CPU time, so it is computed here directly: psutil CPU times at both
ends of the stage, CodeCarbon's TDP table, RAM model and country table. Same formula, same
tables, without CodeCarbon's start-up: it identifies the CPU with py-cpuinfo (which busy-polls a
child process for ~1 s of CPU) and loads its TDP table with pandas, ~1.5 s of CPU in every
process, 15% of a one-epoch LeNet-5 run on 2 cores (benchmarks/startup.py).
kg CO2eq = kWh x the carbon intensity of the country's electricity (CodeCarbon's offline table).
Which method produced a number is recorded beside it, with how far it can be trusted.

    CNNLAB_COUNTRY=FRA   ISO 3166 alpha-3 code of the grid (default USA)
    CNNLAB_ENERGY=0      do not measure

Measuring never fails a run: if it errors, the record says why and training goes on.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import glob
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.files import atomic_write_text

if TYPE_CHECKING:
    import psutil

ENERGY = "energy.json"
DEFAULT_COUNTRY = "USA"
WATTS_PER_THREAD = 4.0  # CodeCarbon's TDP for a CPU its table does not list (DEFAULT_POWER_PER_CORE)

UNCERTAINTY = {
    "rapl": "CPU package energy read from RAPL counters: within ~10% of wall-plug CPU energy",
    "load": "no energy counter: CPU power = TDP x load, a rough estimate (easily off by a factor of 2)",
}

Stop = Callable[[], dict[str, Any]]  # ends a measurement, returns the fields it adds to the record


def enabled() -> bool:
    return os.environ.get("CNNLAB_ENERGY", "1") not in ("0", "", "false")


def country() -> str:
    return os.environ.get("CNNLAB_COUNTRY", DEFAULT_COUNTRY).upper()


@contextmanager
def track(run_path: Path | None, stage: str) -> Iterator[dict[str, Any]]:
    """Measure the enclosed block as `stage`; append the record to RUN/energy.json (if a path).

    Yields the record dict, filled when the block ends (also when it raises)."""
    record: dict[str, Any] = {"stage": stage, "country": country()}
    if not enabled():
        record["skipped"] = "CNNLAB_ENERGY=0"
        yield record
        _append(run_path, record)
        return
    counters, stop = has_counters(), None
    try:
        stop = (start_codecarbon if counters else start_load_estimate)(record["country"])
    except Exception as e:  # noqa: BLE001 - energy is a record, never a reason to fail a run
        record["error"] = f"{'CodeCarbon' if counters else 'the load-based estimate'} could not start: {type(e).__name__}: {e}"
    start = time.perf_counter()
    try:
        yield record
    finally:
        record["duration_s"] = time.perf_counter() - start
        if stop is not None:
            try:
                record.update(stop())
            except Exception as e:  # noqa: BLE001
                record["error"] = f"energy measurement failed to stop: {type(e).__name__}: {e}"
        _append(run_path, record)


def has_counters() -> bool:
    """Whether CodeCarbon would read an energy counter here: a readable RAPL file, or a GPU."""
    if sys.platform != "linux":
        return True  # macOS and Windows have their own backends: let CodeCarbon look
    for path in glob.glob("/sys/class/powercap/intel-rapl*/energy_uj"):
        try:
            Path(path).read_text()
            return True
        except OSError:  # root-only since Linux 5.10 (CVE-2020-8694): CodeCarbon cannot read it either
            pass
    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.exists("/dev/kfd")  # NVIDIA, AMD ROCm


def start_load_estimate(grid: str) -> Stop:
    """CodeCarbon's load-based estimate (`tracking_mode="process"`, no counter) of what follows.

    CPU energy = TDP x (CPU seconds of this process and its children) / logical CPUs: CodeCarbon
    samples power = TDP x CPU share every few seconds and sums power x interval, which adds up
    to exactly this. RAM energy = CodeCarbon's RAM power for the process's memory x wall time."""
    import psutil

    process = psutil.Process()
    cpu_start, wall_start = _cpu_seconds(process), time.perf_counter()

    def stop() -> dict[str, Any]:
        cpu, seconds = _cpu_seconds(process) - cpu_start, time.perf_counter() - wall_start
        model = cpu_model()
        tdp, tdp_source = cpu_tdp(model)
        threads = psutil.cpu_count()
        cpu_kwh = tdp * cpu / threads / 3.6e6
        ram_w = ram_watts()
        ram_kwh = ram_w * seconds / 3.6e6
        kwh = cpu_kwh + ram_kwh
        return {
            "energy_kwh": kwh, "cpu_kwh": cpu_kwh, "ram_kwh": ram_kwh, "gpu_kwh": 0.0,
            "emissions_kg_co2eq": kwh * carbon_intensity(grid), "cpu_power_w": tdp * cpu / threads / max(seconds, 1e-9),
            "cpu_seconds": cpu,
            "method": f"CPU: load-based estimate (TDP {tdp:g} W x this process's CPU time / {threads} logical CPUs; "
                      f"TDP {tdp_source}); RAM: fixed power estimate ({ram_w:g} W, CodeCarbon's RAM model); "
                      "CodeCarbon's formula and tables, computed from psutil CPU times",
            "method_kind": "load", "uncertainty": UNCERTAINTY["load"],
            "cpu_model": model, "codecarbon": importlib.metadata.version("codecarbon"),
        }

    return stop


def _cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU seconds of `process` and its live children (CodeCarbon counts both)."""
    import psutil

    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):  # a child that just ended
            t = p.cpu_times()
            total += t.user + t.system
    return total


@functools.cache
def cpu_model() -> str:
    """The CPU's brand string, as py-cpuinfo reports it to CodeCarbon (/proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


@functools.cache
def cpu_tdp(model: str) -> tuple[float, str]:
    """(watts, where they come from): the CPU's row in CodeCarbon's TDP table, matched by name
    as CodeCarbon matches it, else CodeCarbon's 4 W per logical CPU."""
    import psutil

    with open(_codecarbon_data("hardware/cpu_power.csv"), newline="") as f:
        table = {row["Name"]: row["TDP"] for row in csv.DictReader(f)}  # a few rows are malformed ("27.29.5")
    name = match_cpu(model, list(table))
    if name is not None:
        return float(table[name]), f"of {name} in CodeCarbon's table"
    threads = psutil.cpu_count()
    default = f"{WATTS_PER_THREAD:g} W x {threads} threads, CodeCarbon's default for a CPU not in its table"
    return WATTS_PER_THREAD * threads, default


def match_cpu(model: str, names: list[str]) -> str | None:
    """CodeCarbon's name matching (`TDP._get_matching_cpu`, not greedy), without rapidfuzz.

    An exact match ignoring case; then the same after dropping "(R)", " CPU" and the clock
    speed; then the one name whose words are a subset or a superset of the model's (rapidfuzz's
    token-set ratio of 100); several such names match none."""
    lower = {n.lower(): n for n in reversed(names)}  # the first of equal names wins, as in extractOne
    if model.lower() in lower:
        return lower[model.lower()]
    cleaned = model.replace("(R)", "")
    if (cut := cleaned.find(" CPU @ ")) > 0:
        cleaned = cleaned[:cut]
    cleaned = re.sub(r" @\s*\d+\.\d+GHz", "", cleaned.replace(" CPU", ""))
    if cleaned.lower() in lower:
        return lower[cleaned.lower()]
    words = _words(cleaned)
    hits = [n for n in names if (w := _words(n)) & words and (w <= words or words <= w)]
    return hits[0] if len(hits) == 1 else None


def _words(s: str) -> set[str]:
    return set(re.sub(r"[^a-z0-9]+", " ", s.lower()).split())  # rapidfuzz's default_process, then split


def ram_watts() -> float:
    """CodeCarbon's RAM power for this process's memory (its `RAM` model, process mode)."""
    log = logging.getLogger("codecarbon")
    log.disabled = True  # importing CodeCarbon logs at INFO
    try:
        from codecarbon.external.ram import RAM

        return RAM(tracking_mode="process").total_power().W
    finally:
        log.disabled = False


@functools.cache
def carbon_intensity(grid: str) -> float:
    """kg CO2eq per kWh of the country's electricity, from CodeCarbon's offline table
    (its world average for a country it does not list)."""
    mix = json.loads(Path(_codecarbon_data("private_infra/global_energy_mix.json")).read_text())
    if grid in mix and mix[grid].get("carbon_intensity") is not None:
        return mix[grid]["carbon_intensity"] / 1000
    per_source = json.loads(Path(_codecarbon_data("private_infra/carbon_intensity_per_source.json")).read_text())
    return per_source["world_average"] / 1000


def _codecarbon_data(name: str) -> str:
    """A file of CodeCarbon's data folder, found without importing CodeCarbon (0.2 s)."""
    spec = importlib.util.find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("CodeCarbon is not installed")
    return os.path.join(spec.submodule_search_locations[0], "data", name)


def start_codecarbon(grid: str) -> Stop:
    """CodeCarbon's own tracker around what follows: it reads the energy counters it finds."""
    log = logging.getLogger("codecarbon")
    log.disabled = True  # CodeCarbon logs at INFO before honouring log_level
    try:
        from codecarbon import OfflineEmissionsTracker

        tracker = OfflineEmissionsTracker(
            country_iso_code=grid, log_level="error", output_methods=[],
            tracking_mode="process", allow_multiple_runs=True, measure_power_secs=5,
        )
        tracker.start()
    finally:
        log.disabled = False

    def stop() -> dict[str, Any]:
        log.disabled = True
        try:
            tracker.stop()
        finally:
            log.disabled = False
        d = tracker.final_emissions_data
        kind, method = method_of(tracker)
        return {
            "energy_kwh": d.energy_consumed, "cpu_kwh": d.cpu_energy, "ram_kwh": d.ram_energy,
            "gpu_kwh": d.gpu_energy, "emissions_kg_co2eq": d.emissions, "cpu_power_w": d.cpu_power,
            "method": method, "method_kind": kind, "uncertainty": UNCERTAINTY[kind],
            "cpu_model": d.cpu_model, "codecarbon": d.codecarbon_version,
        }

    return stop


def method_of(tracker: Any) -> tuple[str, str]:
    """('rapl' | 'load', a sentence naming how each device's power was obtained)."""
    parts, kind = [], "load"
    for hw in tracker._hardware:
        name = type(hw).__name__
        mode = getattr(hw, "_mode", None)
        if name == "CPU":
            if mode == "intel_rapl":
                kind = "rapl"
                parts.append("CPU: RAPL energy counters")
            else:
                parts.append(f"CPU: load-based estimate (TDP {getattr(hw, '_tdp', '?')} W x load, mode {mode})")
        elif name == "RAM":
            parts.append("RAM: fixed power estimate")
        elif name == "GPU":
            parts.append("GPU: NVML power readings")
        else:
            parts.append(f"{name}: {mode or 'estimate'}")
    return kind, "; ".join(parts)


def _append(run_path: Path | None, record: dict[str, Any]) -> None:
    if run_path is None:
        return
    stages = read(run_path)
    stages.append(record)
    atomic_write_text(run_path / ENERGY, json.dumps({"stages": stages}, indent=2) + "\n")


def read(run_path: Path) -> list[dict[str, Any]]:
    file = run_path / ENERGY
    return json.loads(file.read_text())["stages"] if file.is_file() else []


def total(run_path: Path, stage: str) -> dict[str, Any] | None:
    """The sum over the records of `stage` (a resumed training has several), or None."""
    measured = [r for r in read(run_path) if r["stage"] == stage and "energy_kwh" in r]
    if not measured:
        return None
    keys = ("duration_s", "energy_kwh", "emissions_kg_co2eq")
    out = {k: sum(r[k] for r in measured) for k in keys}
    last = measured[-1]
    return {**out, "country": last["country"], "method": last["method"], "method_kind": last["method_kind"],
            "uncertainty": last["uncertainty"], "records": len(measured)}
