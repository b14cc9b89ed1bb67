"""Energy and CO2 of each stage of a run (training, evaluation), measured by CodeCarbon offline.

CodeCarbon (Courty et al., codecarbon.io; Lacoste et al. 2019, "Quantifying the Carbon
Emissions of Machine Learning") integrates power over time: CPU power from Intel RAPL counters
where the kernel exposes them, otherwise a *load-based estimate* (the CPU's thermal design power
times its measured load); RAM from a fixed per-GB estimate; NVIDIA GPUs from NVML. kg CO2eq =
kWh x the carbon intensity of the country's electricity (offline: CodeCarbon's own table).
Which method produced a number is recorded beside it, with how far it can be trusted.

    CNNLAB_COUNTRY=FRA   ISO 3166 alpha-3 code of the grid (default USA)
    CNNLAB_ENERGY=0      do not measure (tests; CodeCarbon takes ~2-3 s to start)

Measuring never fails a run: if CodeCarbon errors, the record says why and training goes on.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cnnlab.files import atomic_write_text

ENERGY = "energy.json"
DEFAULT_COUNTRY = "USA"

UNCERTAINTY = {
    "rapl": "CPU package energy read from RAPL counters: within ~10% of wall-plug CPU energy",
    "load": "no energy counter: CPU power = TDP x load, a rough estimate (easily off by a factor of 2)",
}


def enabled() -> bool:
    return os.environ.get("CNNLAB_ENERGY", "1") not in ("0", "", "false")


def country() -> str:
    return os.environ.get("CNNLAB_COUNTRY", DEFAULT_COUNTRY).upper()


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
    log = logging.getLogger("codecarbon")
    tracker = None
    try:
        log.disabled = True  # CodeCarbon logs at INFO before honouring log_level
        from codecarbon import OfflineEmissionsTracker

        tracker = OfflineEmissionsTracker(
            country_iso_code=record["country"], log_level="error", output_methods=[],
            tracking_mode="process", allow_multiple_runs=True, measure_power_secs=5,
        )
        tracker.start()
    except Exception as e:  # noqa: BLE001 - energy is a record, never a reason to fail a run
        record["error"] = f"CodeCarbon could not start: {type(e).__name__}: {e}"
        tracker = None
    start = time.perf_counter()
    try:
        yield record
    finally:
        record["duration_s"] = time.perf_counter() - start
        if tracker is not None:
            try:
                tracker.stop()
                d = tracker.final_emissions_data
                kind, method = method_of(tracker)
                record.update({
                    "energy_kwh": d.energy_consumed, "cpu_kwh": d.cpu_energy, "ram_kwh": d.ram_energy,
                    "gpu_kwh": d.gpu_energy, "emissions_kg_co2eq": d.emissions, "cpu_power_w": d.cpu_power,
                    "method": method, "method_kind": kind, "uncertainty": UNCERTAINTY[kind],
                    "cpu_model": d.cpu_model, "codecarbon": d.codecarbon_version,
                })
            except Exception as e:  # noqa: BLE001
                record["error"] = f"CodeCarbon failed to stop: {type(e).__name__}: {e}"
        log.disabled = False
        _append(run_path, record)


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
