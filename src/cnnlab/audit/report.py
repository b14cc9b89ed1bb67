"""The audits as text: blocks for the bias, privacy, energy and size records a run holds.

The same blocks are report.html's Audit section (`section`) and part of the model card's
"Quantitative analyses" (`cnnlab.publish.card`), so the two always say the same thing. A record
that is missing is said so, with the command that would measure it.
"""

from __future__ import annotations

from cnnlab import energy
from cnnlab.audit.runs import read_audit
from cnnlab.report.blocks import Block, blocks_html, table_block
from cnnlab.run import Run

NOT_MEASURED = "**Not measured.**"


def pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def bias_blocks(run: Run) -> list[Block]:
    """Per-group accuracy from RUN/audit/bias.json."""
    blocks: list[Block] = []
    bias = read_audit(run, "bias")
    if bias:
        rows = [[g["group"], pct(g["accuracy"]), g["count"]] for g in bias["by_group"][:5]]
        blocks += [
            f"**Groups.** Average accuracy {pct(bias['average_accuracy'])}, worst-group accuracy "
            f"**{pct(bias['worst_group_accuracy'])}** ({bias['worst_group']}), largest gap {pct(bias['largest_gap'])}. "
            "The five worst groups:",
            table_block(["group", "accuracy", "images"], rows),
        ]
    else:
        blocks.append(f"Groups: {NOT_MEASURED} Run `cnnlab audit bias {run.path}`.")
    return blocks


def privacy_blocks(run: Run) -> list[Block]:
    """Membership inference from RUN/audit/privacy.json."""
    blocks: list[Block] = []
    priv = read_audit(run, "privacy")
    if priv:
        rows = [[a["attack"], f"{a['auc']:.3f}", pct(a["tpr_at_1pct_fpr"]), f"{a['advantage']:.3f}"] for a in priv["attacks"]]
        blocks += [f"**Membership inference** on {priv['members']} training images vs {priv['nonmembers']} test images "
                   "(AUC 0.5 = no leak):", table_block(["attack", "AUC", "TPR at 1% FPR", "advantage"], rows)]
    else:
        blocks.append(f"Privacy: {NOT_MEASURED} Run `cnnlab audit privacy {run.path}`.")
    return blocks


def cost_blocks(run: Run) -> list[Block]:
    """Energy per stage (RUN/energy.json) and size (RUN/audit/size.json)."""
    blocks: list[Block] = []
    stages = [r for r in energy.read(run.path) if "energy_kwh" in r]
    if stages:
        rows = [[r["stage"], f"{r['duration_s']:.1f}", f"{r['energy_kwh']:.3g}", f"{r['emissions_kg_co2eq']:.3g}", r["country"],
                 r["method_kind"]] for r in stages]
        blocks += ["**Energy and CO2** (CodeCarbon, offline):",
                   table_block(["stage", "seconds", "kWh", "kg CO2eq", "grid", "method"], rows),
                   f"Method: {stages[-1]['method']}. Uncertainty: {stages[-1]['uncertainty']}."]
    else:
        skipped = [r for r in energy.read(run.path) if "energy_kwh" not in r]
        why = f" ({skipped[0].get('error') or skipped[0].get('skipped')})" if skipped else ""
        blocks.append(f"Energy: {NOT_MEASURED}{why}")
    size = read_audit(run, "size")
    if size:
        blocks.append(f"**Size**: {size['params']:,} parameters, {size['flops_per_image']:,} FLOPs per image, weights file "
                      f"{(size['weights_bytes'] or 0) / 1e6:.2f} MB, latency {size['latency_ms_batch1']:.2f} ms at batch 1, "
                      f"{size['throughput_batch256']:,.0f} images/s at batch 256 ({size['device']}, {size['threads']} threads).")
    else:
        blocks.append(f"Size and speed: {NOT_MEASURED} Run `cnnlab compare {run.path}`.")
    return blocks


def section(run: Run) -> str | None:
    """report.html's Audit section; None when nothing was audited and no energy measured."""
    measured = any(read_audit(run, name) for name in ("bias", "privacy", "size"))
    if not measured and not any("energy_kwh" in r for r in energy.read(run.path)):
        return None
    blocks = bias_blocks(run) + privacy_blocks(run) + cost_blocks(run)
    return "<h2>Audit: groups, privacy, energy and size</h2>" + blocks_html(blocks)
