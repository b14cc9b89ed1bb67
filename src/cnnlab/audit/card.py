"""The model card of a run: MODEL_CARD.md and MODEL_CARD.html.

Mitchell et al. 2019, "Model Cards for Model Reporting" (FAT*): model details, intended use,
factors, metrics, evaluation data, training data, quantitative analyses, ethical considerations,
caveats and recommendations. Every number comes from a file the run holds (metrics.jsonl,
evaluation/, attack/, audit/, energy.json, provenance.json); the card computes nothing. A
section with nothing measured says so, and names the command that would measure it.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any, Union

from cnnlab import energy
from cnnlab.audit.runs import read_audit
from cnnlab.files import atomic_write_text
from cnnlab.run import Run

Block = Union[str, tuple[str, list[str], list[list[Any]]]]  # a paragraph, or ("table", header, rows)
NOT_MEASURED = "**Not measured.**"


def _table(header: list[str], rows: list[list[Any]]) -> Block:
    return ("table", header, rows)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _test(run: Run) -> dict[str, Any] | None:
    return next((m for m in reversed(run.metrics()) if m.get("event") == "test"), None)


def _evaluation(run: Run) -> dict[str, Any] | None:
    from cnnlab.report.html import evaluation_dir

    file = evaluation_dir(run) / "evaluation.json"
    return json.loads(file.read_text()) if file.is_file() else None


def model_details(run: Run) -> list[Block]:
    from cnnlab.models.registry import get_entry

    cfg, prov = run.config, run.provenance
    try:
        paper = get_entry(cfg.model).paper
    except Exception:  # noqa: BLE001 - a custom module has no registry entry
        paper = "a user-supplied module"
    training = (f"{cfg.epochs} epochs, {cfg.optimizer} lr {cfg.lr:g}, batch {cfg.batch_size}, schedule {cfg.schedule}, "
                f"weight decay {cfg.weight_decay:g}, augment {cfg.augment}, seed {cfg.seed}")
    special = []
    if cfg.dp:
        special.append(f"DP-SGD (target epsilon {cfg.target_epsilon:g}, delta {cfg.delta:g}, clip {cfg.max_grad_norm:g})")
    if cfg.mitigate != "none":
        special.append(f"group mitigation: {cfg.mitigate}")
    if cfg.adversarial != "none":
        special.append(f"adversarial training: {cfg.adversarial} eps {cfg.eps:g}")
    git = prov.get("git") or {}
    rows = [
        ["architecture", f"{cfg.model} ({paper})"],
        ["input", "x".join(map(str, run.input_shape)) + " pixels in [0, 1]; normalisation is the model's first layer"],
        ["output", f"{len(run.classes)} classes: {', '.join(run.classes)}"],
        ["learned parameters", f"{sum(p.numel() for p in run.model.parameters()):,}"],
        ["training", training],
        ["special training", "; ".join(special) or "none"],
        ["trained", f"{prov.get('started')} to {prov.get('finished') or 'not finished'}"],
        ["software", ", ".join(f"{k} {v}" for k, v in prov.get("versions", {}).items())
         + (f"; cnnlab commit {git.get('commit', '')[:12]}{' (modified)' if git.get('dirty') else ''}" if git else "")],
        ["run directory", str(run.path)],
    ]
    return ["Written by `cnnlab card` from the files of the run.", _table(["", ""], rows)]


def intended_use(run: Run) -> list[Block]:
    return [
        f"{NOT_MEASURED} Intended use is a statement of the model's owner, not a measurement; "
        "cnnlab cannot know it. Edit this section. What the run implies: the model classifies "
        f"{'x'.join(map(str, run.input_shape))} images of {run.config.data} into {len(run.classes)} classes; "
        "it has only seen images like its training data and will answer (wrongly) for anything else.",
    ]


def factors(run: Run) -> list[Block]:
    bias = read_audit(run.path, "bias")
    if not bias:
        return [f"{NOT_MEASURED} No group audit: run `cnnlab audit bias {run.path}` (groups from the dataset, "
                "an attribute such as brightness, or a file of group names)."]
    return [f"Groups audited: {bias['groups']} ({len(bias['by_group'])} groups on {bias['n']} {bias['split']} images; "
            f"smallest group {bias['min_group_size']} images)."]


def metrics(run: Run) -> list[Block]:
    return ["Accuracy (share of correct top-1 predictions); per class precision, recall, F1; per group accuracy, "
            "worst-group accuracy and the largest gap (fairlearn MetricFrame); robust accuracy under attack; "
            "membership-inference AUC and TPR at 1% FPR; energy in kWh and kg CO2eq (CodeCarbon). "
            "Only those measured for this run appear below."]


def evaluation_data(run: Run) -> list[Block]:
    d = run.provenance["data"]
    return [f"The test split of **{d['name']}**: {d['sizes'].get('test', 0):,} images, never used for training "
            f"or model selection (SHA-256 `{d['sha256'].get('test', '')[:16]}…`)."]


def training_data(run: Run) -> list[Block]:
    d = run.provenance["data"]
    meta = d.get("meta", {})
    rows = [
        ["dataset", d["name"]],
        ["source", d.get("source") or "unknown"],
        ["licence", d.get("licence", "unknown")],
        ["homepage", meta.get("homepage", "unknown")],
        ["train / val images", f"{d['sizes'].get('train', 0):,} / {d['sizes'].get('val', 0):,}"],
        ["SHA-256 (train)", d["sha256"].get("train", "")],
    ] + [[k, v] for k, v in meta.items() if k != "homepage"]
    return [_table(["", ""], rows)]


def bias_blocks(run: Run) -> list[Block]:
    """Per-group accuracy from RUN/audit/bias.json."""
    blocks: list[Block] = []
    bias = read_audit(run.path, "bias")
    if bias:
        rows = [[g["group"], _pct(g["accuracy"]), g["count"]] for g in bias["by_group"][:5]]
        blocks += [
            f"**Groups.** Average accuracy {_pct(bias['average_accuracy'])}, worst-group accuracy "
            f"**{_pct(bias['worst_group_accuracy'])}** ({bias['worst_group']}), largest gap {_pct(bias['largest_gap'])}. "
            "The five worst groups:",
            _table(["group", "accuracy", "images"], rows),
        ]
    else:
        blocks.append(f"Groups: {NOT_MEASURED} Run `cnnlab audit bias {run.path}`.")
    return blocks


def privacy_blocks(run: Run) -> list[Block]:
    """Membership inference from RUN/audit/privacy.json."""
    blocks: list[Block] = []
    priv = read_audit(run.path, "privacy")
    if priv:
        rows = [[a["attack"], f"{a['auc']:.3f}", _pct(a["tpr_at_1pct_fpr"]), f"{a['advantage']:.3f}"] for a in priv["attacks"]]
        blocks += [f"**Membership inference** on {priv['members']} training images vs {priv['nonmembers']} test images "
                   "(AUC 0.5 = no leak):", _table(["attack", "AUC", "TPR at 1% FPR", "advantage"], rows)]
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
        blocks += ["**Energy and CO2** (CodeCarbon, offline):", _table(["stage", "seconds", "kWh", "kg CO2eq", "grid", "method"], rows),
                   f"Method: {stages[-1]['method']}. Uncertainty: {stages[-1]['uncertainty']}."]
    else:
        skipped = [r for r in energy.read(run.path) if "energy_kwh" not in r]
        why = f" ({skipped[0].get('error') or skipped[0].get('skipped')})" if skipped else ""
        blocks.append(f"Energy: {NOT_MEASURED}{why}")
    size = read_audit(run.path, "size")
    if size:
        blocks.append(f"**Size**: {size['params']:,} parameters, {size['flops_per_image']:,} FLOPs per image, weights file "
                      f"{(size['weights_bytes'] or 0) / 1e6:.2f} MB, latency {size['latency_ms_batch1']:.2f} ms at batch 1, "
                      f"{size['throughput_batch256']:,.0f} images/s at batch 256 ({size['device']}, {size['threads']} threads).")
    else:
        blocks.append(f"Size and speed: {NOT_MEASURED} Run `cnnlab compare {run.path}`.")
    return blocks


def quantitative(run: Run) -> list[Block]:
    blocks: list[Block] = []
    test, ev = _test(run), _evaluation(run)
    if test:
        blocks.append(f"Test accuracy **{_pct(test['test_acc'])}** (loss {test['test_loss']:.4f}, weights of the last epoch).")
    if ev:
        rows = [[c, f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", s["support"]] for c, s in ev["per_class"].items()]
        blocks += [f"Per class (macro F1 {ev['macro_f1']:.3f}):", _table(["class", "precision", "recall", "F1", "support"], rows)]
    else:
        blocks.append(f"Per-class scores: {NOT_MEASURED} Run `cnnlab evaluate {run.path}`.")

    blocks += bias_blocks(run)
    attacks = sorted((run.path / "attack").glob("*/robustness.json"))
    if attacks:
        for f in attacks:
            r = json.loads(f.read_text())
            pts = ", ".join(f"eps {p['eps']:g}: {_pct(p['accuracy'])}" for p in r["points"])
            blocks.append(f"**Robustness** ({r['attack']}, {r['norm']}, {r['n']} {r['split']} images): {pts}.")
    else:
        blocks.append(f"Robustness: {NOT_MEASURED} Run `cnnlab attack {run.path}`.")

    explained = sorted(p for p in (run.path / "explain").rglob("*") if p.is_file()) if (run.path / "explain").is_dir() else []
    blocks.append(
        f"**Attributions**: {len(explained)} file(s) in {run.path / 'explain'} (see the report)." if explained
        else f"Attributions: {NOT_MEASURED} Run `cnnlab explain {run.path}`."
    )

    blocks += privacy_blocks(run)
    blocks += cost_blocks(run)
    return blocks


def ethical(run: Run) -> list[Block]:
    d = run.provenance["data"]
    blocks: list[Block] = [f"Training data licence: {d.get('licence', 'unknown')}; source: {d.get('source') or 'unknown'}."]
    dp = run.provenance.get("privacy")
    blocks.append(
        f"Trained with DP-SGD: epsilon {dp['epsilon']:.2f} spent at delta {dp['delta']:g} ({dp['caveat']})." if dp
        else "Not trained with differential privacy: the model may memorise individual training images."
    )
    bias = read_audit(run.path, "bias")
    if bias and bias["largest_gap"] > 0.1:
        blocks.append(f"The model serves groups unequally: a {_pct(bias['largest_gap'])} accuracy gap between groups.")
    if not bias:
        blocks.append(f"Fairness across groups: {NOT_MEASURED}")
    return blocks


def caveats(run: Run) -> list[Block]:
    out: list[Block] = [f"Every number was measured on {run.config.data} only; performance on other images is unknown."]
    bias = read_audit(run.path, "bias")
    if bias and bias["min_group_size"] < 100:
        out.append(f"The smallest audited group has {bias['min_group_size']} images: its accuracy is uncertain by several points.")
    if any(r.get("method_kind") == "load" for r in energy.read(run.path)):
        out.append("Energy figures are load-based estimates (no hardware counter): treat them as order-of-magnitude.")
    if not run.finished:
        out.append("The run is not finished.")
    return out


SECTIONS = [
    ("Model details", model_details), ("Intended use", intended_use), ("Factors", factors), ("Metrics", metrics),
    ("Evaluation data", evaluation_data), ("Training data", training_data), ("Quantitative analyses", quantitative),
    ("Ethical considerations", ethical), ("Caveats and recommendations", caveats),
]


def build_card(run: Run) -> list[tuple[str, list[Block]]]:
    return [(title, section(run)) for title, section in SECTIONS]


def to_markdown(name: str, card: list[tuple[str, list[Block]]]) -> str:
    lines = [f"# Model card: {name}", ""]
    for title, blocks in card:
        lines += [f"## {title}", ""]
        for b in blocks:
            if isinstance(b, str):
                lines += [b, ""]
            else:
                _, header, rows = b
                lines.append("| " + " | ".join(header) + " |")
                lines.append("|" + "---|" * len(header))
                lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
                lines.append("")
    return "\n".join(lines)


def _inline(text: str) -> str:
    """The two markdown marks the card uses, **bold** and `code`, as HTML."""
    import re

    text = escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def to_html(name: str, card: list[tuple[str, list[Block]]]) -> str:
    from cnnlab.report.html import STYLE

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Model card: {escape(name)}</title>"
             f"<style>{STYLE}</style></head><body><h1>Model card: {escape(name)}</h1>"]
    for title, blocks in card:
        parts.append(f"<h2>{escape(title)}</h2>" + blocks_html(blocks))
    parts.append("</body></html>\n")
    return "".join(parts)


def blocks_html(blocks: list[Block]) -> str:
    parts = []
    for b in blocks:
        if isinstance(b, str):
            parts.append(f"<p>{_inline(b)}</p>")
        else:
            _, header, rows = b
            head = "".join(f"<th>{escape(h)}</th>" for h in header)
            body = "".join("<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in r) + "</tr>" for r in rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    return "".join(parts)


def write_card(run: Run) -> dict[str, Path]:
    card = build_card(run)
    md, html = run.path / "MODEL_CARD.md", run.path / "MODEL_CARD.html"
    atomic_write_text(md, to_markdown(run.name, card))
    atomic_write_text(html, to_html(run.name, card))
    return {"markdown": md, "html": html}
