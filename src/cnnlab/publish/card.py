"""The model card of a run: MODEL_CARD.md and MODEL_CARD.html.

Mitchell et al. 2019, "Model Cards for Model Reporting" (FAT*): model details, intended use,
factors, metrics, evaluation data, training data, quantitative analyses, ethical considerations,
caveats and recommendations. Every number comes from what the run holds, read through the
reader of the package that measured it (metrics.jsonl, evaluation/, attack/, audit/, explain/,
energy.json, provenance.json); the card computes nothing. A section with nothing measured says
so, and names the command that would measure it.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from cnnlab import energy
from cnnlab.attack.runs import saved_results
from cnnlab.audit.report import NOT_MEASURED, bias_blocks, cost_blocks, pct, privacy_blocks
from cnnlab.audit.runs import read_audit
from cnnlab.explain.runs import FOLDER as EXPLAIN
from cnnlab.explain.runs import saved_files
from cnnlab.files import atomic_write_text
from cnnlab.publish.evaluation import evaluation_result, headline, number, per_class_table
from cnnlab.report.blocks import Block, blocks_html, blocks_markdown, table_block
from cnnlab.report.html import page
from cnnlab.run import Run
from cnnlab.tasks.names import label


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
    return ["Written by `cnnlab card` from the files of the run.", table_block(["", ""], rows)]


# What a model of each task does, in the words of the intended use.
DOES = {
    "classify": "classifies {shape} images of {data} into {n} classes",
    "segment": "labels every pixel of {shape} images of {data} with one of {n} classes (background included)",
    "detect": "finds objects of {n} classes (after the background) in {shape} images of {data}, as boxes with scores",
    "video": "classifies clips of {data} (frames x channels x height x width {shape}) into {n} classes by their motion",
}


def intended_use(run: Run) -> list[Block]:
    task = run.task.name
    does = DOES.get(task, "learns the " + task + " task on {shape} images of {data} ({n} classes)")
    n = len(run.classes) - (task == "detect")
    return [
        f"{NOT_MEASURED} Intended use is a statement of the model's owner, not a measurement; "
        "cnnlab cannot know it. Edit this section. What the run implies: the model "
        + does.format(shape="x".join(map(str, run.input_shape)), data=run.config.data, n=n)
        + "; it has only seen images like its training data and will answer (wrongly) for anything else.",
    ]


def factors(run: Run) -> list[Block]:
    bias = read_audit(run, "bias")
    if not bias:
        return [f"{NOT_MEASURED} No group audit: run `cnnlab audit bias {run.path}` (groups from the dataset, "
                "an attribute such as brightness, or a file of group names)."]
    return [f"Groups audited: {bias['groups']} ({len(bias['by_group'])} groups on {bias['n']} {bias['split']} images; "
            f"smallest group {bias['min_group_size']} images)."]


# How the test split scores each task's model (tasks/*.py cite the sources).
TASK_METRICS = {
    "classify": "Accuracy (share of correct top-1 predictions); per class precision, recall, F1",
    "segment": "Mean IoU over the classes (Long et al. 2015), global pixel accuracy and class-average accuracy "
               "(Shuai et al. 2016), from one confusion matrix of the test pixels; per class IoU",
    "detect": "COCO's mean average precision (Lin et al. 2014): mAP@0.5 and mAP@[.5:.95], averaged over the "
              "classes, from torchmetrics with the pycocotools backend; per class AP and recall",
    "video": "Accuracy of the clips' classes (share of correct top-1 predictions); per class precision, recall, F1; "
             "a two-stream model's appearance and motion streams each scored alone",
}


def metrics(run: Run) -> list[Block]:
    return [TASK_METRICS.get(run.task.name, f"The {run.task.name} task's own scores")
            + "; per group accuracy, worst-group accuracy and the largest gap (fairlearn MetricFrame); robust accuracy "
            "under attack; membership-inference AUC and TPR at 1% FPR; energy in kWh and kg CO2eq (CodeCarbon). "
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
    return [table_block(["", ""], rows)]


def quantitative(run: Run) -> list[Block]:
    test, ev = run.test_result(), evaluation_result(run)
    blocks = classification_scores(run, test, ev) if run.task.name == "classify" else task_scores(run, test, ev)
    blocks += bias_blocks(run)
    attacks = saved_results(run)
    if attacks:
        for r in attacks:
            # a detector's or segmenter's own score (mAP@0.5, mean IoU), a classifier's accuracy
            pts = ", ".join(f"eps {p['eps']:g}: " + (f"{label(r['metric'])} {number(p['score'])}" if "metric" in r
                                                     else pct(p["accuracy"])) for p in r["points"])
            blocks.append(f"**Robustness** ({r['attack']}, {r['norm']}, {r['n']} {r['split']} images): {pts}.")
    else:
        blocks.append(f"Robustness: {NOT_MEASURED} Run `cnnlab attack {run.path}`.")

    explained = saved_files(run)
    blocks.append(
        f"**Attributions**: {len(explained)} file(s) in {run.path / EXPLAIN} (see the report)." if explained
        else f"Attributions: {NOT_MEASURED} Run `cnnlab explain {run.path}`."
    )

    blocks += privacy_blocks(run)
    blocks += cost_blocks(run)
    return blocks


def classification_scores(run: Run, test: dict[str, Any] | None, ev: dict[str, Any] | None) -> list[Block]:
    blocks: list[Block] = []
    if test:
        blocks.append(f"Test accuracy **{pct(test['test_acc'])}** (loss {test['test_loss']:.4f}, weights of the last epoch).")
    if ev:
        rows = [[c, f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", s["support"]]
                for c, s in ev["per_class"].items()]
        blocks += [f"Per class (macro F1 {ev['macro_f1']:.3f}):",
                   table_block(["class", "precision", "recall", "F1", "support"], rows)]
    else:
        blocks.append(f"Per-class scores: {NOT_MEASURED} Run `cnnlab evaluate {run.path}`.")
    return blocks


def task_scores(run: Run, test: dict[str, Any] | None, ev: dict[str, Any] | None) -> list[Block]:
    """A detector's or segmenter's test scores: those training measured, and per class those
    `cnnlab evaluate` saved (n/a: a class absent from the test split)."""
    task = run.task.name
    blocks: list[Block] = []
    if test:
        numbers = headline({k.removeprefix("test_"): v for k, v in test.items() if k.startswith("test_")}, run.task.score)
        (name, score), *others = numbers
        blocks.append(f"Test {name} **{number(score)}** (" + ", ".join(f"{k} {number(v)}" for k, v in others)
                      + "; weights of the last epoch).")
    if ev:
        blocks += ["Per class:", table_block(*per_class_table(ev, task))]
    else:
        blocks.append(f"Per-class scores and pictures: {NOT_MEASURED} Run `cnnlab evaluate {run.path}`.")
    return blocks


def ethical(run: Run) -> list[Block]:
    d = run.provenance["data"]
    blocks: list[Block] = [f"Training data licence: {d.get('licence', 'unknown')}; source: {d.get('source') or 'unknown'}."]
    dp = run.provenance.get("privacy")
    blocks.append(
        f"Trained with DP-SGD: epsilon {dp['epsilon']:.2f} spent at delta {dp['delta']:g} ({dp['caveat']})." if dp
        else "Not trained with differential privacy: the model may memorise individual training images."
    )
    bias = read_audit(run, "bias")
    if bias and bias["largest_gap"] > 0.1:
        blocks.append(f"The model serves groups unequally: a {pct(bias['largest_gap'])} accuracy gap between groups.")
    if not bias:
        blocks.append(f"Fairness across groups: {NOT_MEASURED}")
    return blocks


def caveats(run: Run) -> list[Block]:
    out: list[Block] = [f"Every number was measured on {run.config.data} only; performance on other images is unknown."]
    bias = read_audit(run, "bias")
    if bias and bias["min_group_size"] < 100:
        out.append(f"The smallest audited group has {bias['min_group_size']} images: "
                   "its accuracy is uncertain by several points.")
    if any(r.get("method_kind") == "load" for r in energy.read(run.path)):
        out.append("Energy figures are load-based estimates (no hardware counter): treat them as order-of-magnitude.")
    if not run.finished:
        out.append("The run is not finished.")
    return out


SECTIONS = (
    ("Model details", model_details), ("Intended use", intended_use), ("Factors", factors), ("Metrics", metrics),
    ("Evaluation data", evaluation_data), ("Training data", training_data), ("Quantitative analyses", quantitative),
    ("Ethical considerations", ethical), ("Caveats and recommendations", caveats),
)


def build_card(run: Run) -> list[tuple[str, list[Block]]]:
    return [(title, section(run)) for title, section in SECTIONS]


def to_markdown(name: str, card: list[tuple[str, list[Block]]]) -> str:
    lines = [f"# Model card: {name}", ""]
    for title, blocks in card:
        lines += [f"## {title}", "", *blocks_markdown(blocks)]
    return "\n".join(lines)


def to_html(name: str, card: list[tuple[str, list[Block]]]) -> str:
    return page(f"Model card: {name}", (f"<h2>{escape(title)}</h2>" + blocks_html(blocks) for title, blocks in card))


def write_card(run: Run) -> dict[str, Path]:
    card = build_card(run)
    md, html = run.path / "MODEL_CARD.md", run.path / "MODEL_CARD.html"
    atomic_write_text(md, to_markdown(run.name, card))
    atomic_write_text(html, to_html(run.name, card))
    return {"markdown": md, "html": html}
