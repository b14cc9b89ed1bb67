"""report.html: one self-contained page (figures inlined) built from what a run holds.

Each section is a function `(run) -> html | None`; a section whose data the run does not have
yet (say, no evaluation) returns None and is left out. `SECTIONS` lists them all, in the order
of the page: the run's own, then each analysis's (from its package's report.py), then the model.
Nothing is computed here that the run does not already hold, except the model summary.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from cnnlab.attack import report as attack_report
from cnnlab.audit import report as audit_report
from cnnlab.explain import report as explain_report
from cnnlab.files import atomic_write_text
from cnnlab.generate import report as generate_report
from cnnlab.inside import report as inside_report
from cnnlab.publish.evaluation import evaluation_dir, evaluation_result, headline, number, per_class_table
from cnnlab.report import figures
from cnnlab.report.html import img, page, table
from cnnlab.run import Run
from cnnlab.tasks.names import label


def overview(run: Run) -> str:
    test = run.test_result()
    status = "finished" if run.finished else "not finished (resume with cnnlab train --resume)"
    rows = [
        ["model", run.config.model],
        ["data", run.config.data],
        ["classes", ", ".join(run.classes)],
        ["input", "x".join(map(str, run.input_shape)) + " pixels in [0, 1]"],
        ["status", status],
    ]
    if test:
        score = run.task.score
        rows.append([f"test {label(score)}", f"{number(test.get(f'test_{score}'))} (weights of the last epoch)"])
    return "<h2>Overview</h2>" + table(["", ""], rows)


def training(run: Run) -> str | None:
    metrics = run.metrics()
    epochs = [m for m in metrics if m.get("event") == "epoch"]
    if not epochs:
        return None
    task = run.task
    scores = list(dict.fromkeys([*task.train_metrics, task.score]))  # what training measured, then the score
    loss = "detection loss" if task.name == "detect" else "cross-entropy loss"
    png = figures.training_curves(metrics, run.path / "figures" / "curves.png", {k: label(k) for k in scores}, loss)
    rows = [
        [m["epoch"], number(m["train_loss"]), *(number(m.get(f"train_{k}")) for k in task.train_metrics),
         number(m.get("val_loss")), *(number(m.get(f"val_{k}")) for k in scores),
         f"{m['lr']:.2e}", f"{m['images_per_s']:,.0f}", f"{m['epoch_seconds']:.1f}"]
        for m in epochs
    ]
    header = ["epoch", "train loss", *(f"train {label(k)}" for k in task.train_metrics), "val loss",
              *(f"val {label(k)}" for k in scores), "lr", "images/s", "seconds"]
    return "<h2>Training</h2>" + img(png, "training curves") + table(header, rows)


def evaluation(run: Run) -> str | None:
    ev = evaluation_result(run)
    if ev is None:
        return None
    folder = evaluation_dir(run)
    if run.task.name not in ("classify", "video"):  # a class per image or per clip: the same evaluation
        return task_evaluation(run, ev, folder)
    per_class = [
        [c, f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", s["support"]]
        for c, s in ev["per_class"].items()
    ]
    confused = [[m["true"], m["predicted"], m["count"]] for m in ev["most_confused"]]
    return (
        f"<h2>Evaluation on the test split</h2><p>accuracy <b>{ev['accuracy']:.4f}</b> on {ev['n']} images, "
        f"macro F1 {ev['macro_f1']:.4f}, loss {ev['loss']:.4f}</p>"
        + table(["class", "precision", "recall", "F1", "support"], per_class)
        + "<h3>Most confused pairs</h3>" + table(["true", "predicted as", "count"], confused)
        + "<h3>Confusion matrix</h3>" + img(folder / "confusion.png", "confusion matrix")
        + "<h3>Misclassified examples (most confident first)</h3>" + img(folder / "misclassified.png", "misclassified")
    )


# The headings of a detector's and a segmenter's pictures (Task.pictures), by file name.
PICTURES = {
    "masks": "Test images: true and predicted masks",
    "confusion": "Pixel confusion matrix (row: true class)",
    "boxes": "Test images: true and predicted boxes",
}


def task_evaluation(run: Run, ev: dict[str, Any], folder: Path) -> str:
    """A detector's or segmenter's evaluation: its scores, per class, and every picture it drew."""
    task = run.task.name
    (name, score), *others = headline(ev, run.task.score)
    n = run.provenance["data"]["sizes"].get("test", 0)
    parts = [
        f"<h2>Evaluation on the test split</h2><p>{escape(name)} <b>{number(score)}</b> on {n:,} images, "
        + ", ".join(f"{escape(k)} {number(v)}" for k, v in others) + "; n/a: a class absent from the split.</p>",
        table(*per_class_table(ev, task)),
    ]
    for png in sorted(folder.glob("*.png"), key=lambda p: (p.stem not in PICTURES, p.stem)):
        pr = png.stem.startswith("pr-")
        heading = PICTURES.get(png.stem) or (f"Precision-recall curves: {png.stem[3:]}" if pr else png.stem)
        parts.append(f"<h3>{escape(heading)}</h3>" + img(png, png.stem))
    return "".join(parts)


def model_summary(run: Run) -> str:
    from cnnlab.summary import summarize

    s = summarize(run.model, run.input_shape, run.config.model)
    rows = [[layer.name, layer.type, layer.chosen, "x".join(map(str, layer.output_shape)), f"{layer.params:,}",
             f"{layer.flops:,}"] for layer in s.layers]
    rows.append(["total", "", "", "", f"{s.params:,}", f"{s.flops:,}"])
    return (
        "<h2>Model summary</h2><p>The <i>chosen</i> column holds hyperparameters, set by a person; the "
        "<i>learned</i> column counts parameters set by training.</p>"
        + table(["layer", "type", "chosen", "output", "learned", "FLOPs"], rows)
    )


def hyperparameters(run: Run) -> str:
    rows = [[k, v] for k, v in run.config.to_dict().items()]
    return "<h2>Chosen hyperparameters (config.toml)</h2>" + table(["name", "value"], rows)


def provenance(run: Run) -> str:
    return "<h2>Provenance</h2><pre>" + escape(json.dumps(run.provenance, indent=2)) + "</pre>"


SECTIONS = (
    overview,
    training,
    evaluation,
    generate_report.section,  # Generation: the grid of each epoch, the measures, the real-vs-generated score
    attack_report.section,  # Robustness: what `cnnlab attack` measured
    inside_report.section,  # Inside the network: filters, feature maps, MLP vs CNN
    explain_report.section,  # Interpretability: attributions, their sanity, influence
    audit_report.section,  # Audit: groups, privacy, energy and size
    model_summary,
    hyperparameters,
    provenance,
)


def write_report(run: Run) -> Path:
    """Write run/report.html from every section the run has data for; return its path."""
    path = run.path / "report.html"
    atomic_write_text(path, page(f"cnnlab report: {run.name}", (html for section in SECTIONS if (html := section(run)))))
    return path
