"""Audit a run: `cnnlab audit bias|privacy`, `cnnlab compare` (size, speed, energy) and
`cnnlab verify` (its files against provenance.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli.options import RunArg, Weights
from cnnlab.cli.output import JsonFlag, console, emit, table
from cnnlab.errors import CnnlabError

audit = typer.Typer(help="Audit a run: per-group errors (bias) and membership inference (privacy).", no_args_is_help=True)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


@audit.command()
def bias(
    run_dir: RunArg,
    groups: Annotated[str | None, typer.Option(
        help="group (the dataset's own), class, brightness, or a FILE with one group name per image.")] = None,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    weights: Weights = "model",
    as_json: JsonFlag = False,
) -> None:
    """Accuracy per group and per class, worst group, largest gap (fairlearn); saved in RUN/audit/bias.json."""
    from cnnlab.audit.runs import bias_run
    from cnnlab.run import Run

    if split not in ("train", "val", "test"):
        raise CnnlabError(f"split must be train, val or test, got '{split}'.")
    doc = bias_run(Run.load(run_dir, weights=weights), groups, split)
    if as_json:
        emit(doc)
        return
    console.print(f"groups: {doc['groups']}; {doc['n']} {split} images")
    rows = [[g["group"], _pct(g["accuracy"]), _pct(g["error_rate"]), g["count"]] for g in doc["by_group"]]
    console.print(table("per group (worst first)", ["group", "accuracy", "error rate", "images"], rows))
    rows = [[c["class"], _pct(c["accuracy"]), c["count"], c["worst_group"], _pct(c["worst_group_accuracy"])]
            for c in doc["by_class"]]
    console.print(table("per class", ["class", "accuracy", "images", "worst group in class", "its accuracy"], rows))
    console.print(f"average accuracy [bold]{_pct(doc['average_accuracy'])}[/], "
                  f"worst-group accuracy [bold]{_pct(doc['worst_group_accuracy'])}[/] "
                  f"({doc['worst_group']}), largest gap {_pct(doc['largest_gap'])}")


@audit.command()
def privacy(
    run_dir: RunArg,
    n: Annotated[int, typer.Option("--n", help="Members (training images) and as many non-members (test images).")] = 2000,
    reference: Annotated[Path | None, typer.Option(
        help="A run that never saw these images, to calibrate per example (else: noisy neighbours).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the choice of images.")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Membership inference (loss threshold and calibrated): AUC and TPR at 1% FPR; saved in RUN/audit/privacy.json."""
    from cnnlab.audit.runs import privacy_run
    from cnnlab.run import Run

    if n < 1:
        raise CnnlabError("--n must be at least 1.")
    run = Run.load(run_dir)
    ref = Run.load(reference) if reference else None
    if ref is not None:
        run.check_fits(ref.input_shape, len(ref.classes), f"reference run {ref.name}")
    doc = privacy_run(run, n, ref, seed)
    if as_json:
        emit(doc)
        return
    rows = [[a["attack"], f"{a['auc']:.3f}", _pct(a["tpr_at_1pct_fpr"]), f"{a['advantage']:.3f}"] for a in doc["attacks"]]
    console.print(table(f"membership inference: {doc['members']} members vs {doc['nonmembers']} non-members",
                        ["attack", "AUC", "TPR at 1% FPR", "advantage"], rows))
    console.print(f"mean loss: members {doc['member_loss_mean']:.4f}, non-members {doc['nonmember_loss_mean']:.4f}; "
                  f"calibration: {doc['calibration']}")
    if doc["dp"]:
        console.print(f"trained with DP-SGD: epsilon {doc['dp']['epsilon']:.2f} at delta {doc['dp']['delta']:g}")


def compare(
    run_dirs: Annotated[list[Path], typer.Argument(metavar="RUN...", help="Run directories.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the two plots.")] = Path("runs/compare"),
    remeasure: Annotated[bool, typer.Option(help="Measure size and speed again even if RUN/audit/size.json exists.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Accuracy (or the task's score: mean IoU, mAP@0.5) vs parameters, FLOPs, latency, energy and CO2 of runs
    of one task; plots it vs energy and vs parameters."""
    from cnnlab.audit.compare import compare_runs

    doc = compare_runs(run_dirs, out_dir, remeasure)
    if as_json:
        emit(doc)
        return

    def num(v: float | None, fmt: str) -> str:
        return "not measured" if v is None else format(v, fmt)

    rows = [
        [r["run"] + (f" ({r['derived_by']} of {Path(r['parent']).name})" if r.get("parent") else ""), r["model"],
         _pct(r[doc["score"]]), f"{r['params']:,}", f"{r['flops_per_image'] / 1e6:.2f}", num(r["weights_mb"], ".3f"),
         f"{r['latency_ms_batch1']:.2f}", f"{r['latency_ms_batch256']:.1f}", f"{r['throughput_batch256']:,.0f}",
         num(r["train_seconds"], ".0f"), num(r["train_kwh"], ".2e"), num(r["train_kg_co2eq"], ".2e"),
         num(r["predict_kwh_per_10k"], ".2e")]
        for r in doc["rows"]
    ]
    score = "test acc" if doc["score"] == "test_acc" else doc["score_label"]
    header = ["run", "model", score, "params", "MFLOP/img", "MB", "ms b=1", "ms b=256", "img/s b=256", "train s",
              "train kWh", "kg CO2eq", "kWh/10k pred."]
    console.print(table("compare", header, rows))
    country = next((r["country"] for r in doc["rows"] if r["country"]), None)
    for m in doc["energy_methods"]:
        console.print(f"energy method: {m}" + (f" (grid: {country})" if country else ""))
    for r in doc["rows"][:1]:
        if r["energy_uncertainty"]:
            console.print(f"uncertainty: {r['energy_uncertainty']}")
    for name, path in doc["figures"].items():
        console.print(f"{name}: {path}")


def verify(
    run_dir: RunArg,
    no_data: Annotated[bool, typer.Option(
        "--no-data", help="Check the weights files only (skip re-loading the dataset).")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Re-hash the run's data and weights files against provenance.json; exit 1 if anything differs."""
    from cnnlab.audit.verify import verify as verify_run

    doc = verify_run(run_dir, check_data=not no_data)
    if as_json:
        emit(doc)
    else:
        rows = [[c["what"], "ok" if c["ok"] else "DIFFERS", (c["expected"] or "")[:16], (c["found"] or "")[:16],
                 c.get("note", "")] for c in doc["checks"]]
        console.print(table(f"verify {doc['run']}", ["what", "result", "recorded SHA-256", "found", "note"], rows))
        console.print(f"data source: {doc['data_source']}; licence: {doc['data_licence']}; seed {doc['seed']}")
    if not doc["ok"]:
        bad = ", ".join(c["what"] for c in doc["checks"] if not c["ok"])
        raise CnnlabError(f"{run_dir} is not what it claims: {bad} differ(s) from provenance.json.")
    if not as_json:
        console.print("[bold]verified[/]: the data and weights are those the run recorded.")
