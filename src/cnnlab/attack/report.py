"""The report's Robustness section: what `cnnlab attack` measured on this run."""

from __future__ import annotations

from html import escape
from pathlib import Path

from cnnlab.attack.runs import saved_results
from cnnlab.report.html import img, table
from cnnlab.run import Run
from cnnlab.tasks.names import label


def section(run: Run) -> str | None:
    """One table and two pictures per attack run on this run; None if it was never attacked."""
    results = saved_results(run)
    if not results:
        return None
    cfg = run.config
    trained = (
        f"This model was trained adversarially ({escape(cfg.adversarial)}, eps {cfg.eps:g})."
        if cfg.adversarial != "none" else "This model had standard (not adversarial) training."
    )
    parts = [
        "<h2>Robustness</h2><p>Accuracy (for a detector mAP@0.5, for a segmenter mIoU) when each test image "
        f"is replaced by the worst image an attack finds within eps of it (pixels in [0, 1]). {trained}</p>"
    ]
    for r in results:
        attack = f"{r['attack']}-{r['steps']}" if r["attack"] == "pgd" else r["attack"]
        if "metric" in r:  # a detector or segmenter: its own score, under PGD on its own loss
            score = label(r["metric"])
            rows = [[f"{p['eps']:g}" + (" (clean)" if p["eps"] == 0 else ""), f"{p['score']:.4f}", f"{p['loss']:.4g}"]
                    for p in r["points"]]
            header = ["eps", score, "loss"]
        else:
            score = "accuracy"
            rows = [[f"{p['eps']:g}" + (" (clean)" if p["eps"] == 0 else ""), f"{p['accuracy']:.4f}"] for p in r["points"]]
            header = ["eps", "accuracy"]
        parts.append(f"<h3>{escape(attack)} ({escape(r['norm'])}) on {r['n']} {escape(r['split'])} images of "
                     f"{escape(r['data'])}</h3>" + table(header, rows))
        for key, file in r["files"].items():
            alt = f"{score} against eps" if key == "curve" else "original, perturbation, adversarial" if key == "examples" else key
            if Path(file).is_file():
                parts.append(img(Path(file), alt))
    return "".join(parts)
