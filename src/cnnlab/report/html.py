"""report.html: one self-contained page (figures inlined) built from what a run holds.

Each section is a function `(run) -> html | None`; a section whose data the run does not have
yet (say, no evaluation) returns None and is left out. Analyses add their own sections to
`SECTIONS`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from html import escape
from pathlib import Path

from cnnlab.files import atomic_write_text, slug
from cnnlab.report import figures
from cnnlab.run import Run

Section = Callable[[Run], "str | None"]


def evaluation_dir(run: Run, data: str | None = None, split: str = "test", weights: str = "model") -> Path:
    """Where `cnnlab evaluate` writes the evaluation of `data` (default: the run's) on `split`."""
    name = f"{slug(data or run.config.data)}-{split}" + ("" if weights == "model" else f"-{weights}")
    return run.path / "evaluation" / name


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def overview(run: Run) -> str:
    test = next((m for m in reversed(run.metrics()) if m.get("event") == "test"), None)
    status = "finished" if run.finished else "not finished (resume with cnnlab train --resume)"
    rows = [
        ["model", run.config.model],
        ["data", run.config.data],
        ["classes", ", ".join(run.classes)],
        ["input", "x".join(map(str, run.input_shape)) + " pixels in [0, 1]"],
        ["status", status],
    ]
    if test:
        rows.append(["test accuracy", f"{test['test_acc']:.4f} (weights of the last epoch)"])
    return "<h2>Overview</h2>" + _table(["", ""], rows)


def training(run: Run) -> str | None:
    metrics = run.metrics()
    epochs = [m for m in metrics if m.get("event") == "epoch"]
    if not epochs:
        return None
    png = figures.training_curves(metrics, run.path / "figures" / "curves.png")
    rows = [
        [m["epoch"], f"{m['train_loss']:.4f}", f"{m['train_acc']:.4f}", f"{m.get('val_loss', float('nan')):.4f}",
         f"{m.get('val_acc', float('nan')):.4f}", f"{m['lr']:.2e}", f"{m['images_per_s']:,.0f}", f"{m['epoch_seconds']:.1f}"]
        for m in epochs
    ]
    table = _table(["epoch", "train loss", "train acc", "val loss", "val acc", "lr", "images/s", "seconds"], rows)
    return "<h2>Training</h2>" + _img(png, "training curves") + table


def evaluation(run: Run) -> str | None:
    folder = evaluation_dir(run)
    if not (folder / "evaluation.json").is_file():
        return None
    ev = json.loads((folder / "evaluation.json").read_text())
    per_class = [
        [c, f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", s["support"]]
        for c, s in ev["per_class"].items()
    ]
    confused = [[m["true"], m["predicted"], m["count"]] for m in ev["most_confused"]]
    return (
        f"<h2>Evaluation on the test split</h2><p>accuracy <b>{ev['accuracy']:.4f}</b> on {ev['n']} images, "
        f"macro F1 {ev['macro_f1']:.4f}, loss {ev['loss']:.4f}</p>"
        + _table(["class", "precision", "recall", "F1", "support"], per_class)
        + "<h3>Most confused pairs</h3>" + _table(["true", "predicted as", "count"], confused)
        + "<h3>Confusion matrix</h3>" + _img(folder / "confusion.png", "confusion matrix")
        + "<h3>Misclassified examples (most confident first)</h3>" + _img(folder / "misclassified.png", "misclassified")
    )


def model_summary(run: Run) -> str:
    from cnnlab.summary import summarize

    s = summarize(run.model, run.input_shape, run.config.model)
    rows = [[l.name, l.type, l.chosen, "x".join(map(str, l.output_shape)), f"{l.params:,}", f"{l.flops:,}"] for l in s.layers]
    rows.append(["total", "", "", "", f"{s.params:,}", f"{s.flops:,}"])
    return (
        "<h2>Model summary</h2><p>The <i>chosen</i> column holds hyperparameters, set by a person; the "
        "<i>learned</i> column counts parameters set by training.</p>"
        + _table(["layer", "type", "chosen", "output", "learned", "FLOPs"], rows)
    )


def hyperparameters(run: Run) -> str:
    rows = [[k, v] for k, v in run.config.to_dict().items()]
    return "<h2>Chosen hyperparameters (config.toml)</h2>" + _table(["name", "value"], rows)


def provenance(run: Run) -> str:
    return "<h2>Provenance</h2><pre>" + escape(json.dumps(run.provenance, indent=2)) + "</pre>"


SECTIONS: list[Section] = [overview, training, evaluation, model_summary, hyperparameters, provenance]
from cnnlab.attack.report import robustness  # noqa: E402  (#5: what `cnnlab attack` measured)
SECTIONS.insert(SECTIONS.index(model_summary), robustness)
from cnnlab.inside.report import inside_section  # noqa: E402  (#3: filters, feature maps, MLP vs CNN)
SECTIONS.insert(SECTIONS.index(model_summary), inside_section)
from cnnlab.explain.report import interpretability  # noqa: E402  (#4: attributions, sanity, influence)
SECTIONS.insert(SECTIONS.index(model_summary), interpretability)
from cnnlab.audit.report import audit_section  # noqa: E402  (#6: bias, privacy, energy, size)
SECTIONS.insert(SECTIONS.index(model_summary), audit_section)

STYLE = """body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}
th{background:#f3f3f3}img{max-width:100%}pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:12px}"""


def write_report(run: Run) -> Path:
    """Write run/report.html from every section the run has data for; return its path."""
    body = "".join(html for section in SECTIONS if (html := section(run)))
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>cnnlab report: {escape(run.name)}</title>"
        f"<style>{STYLE}</style></head><body><h1>cnnlab report: {escape(run.name)}</h1>{body}</body></html>\n"
    )
    path = run.path / "report.html"
    atomic_write_text(path, page)
    return path
