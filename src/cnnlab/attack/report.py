"""The report's Robustness section: what `cnnlab attack` measured on this run."""

from __future__ import annotations

from html import escape
from pathlib import Path

from cnnlab.attack.runs import saved_results
from cnnlab.report.html import img, table
from cnnlab.run import Run


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
        "<h2>Robustness</h2><p>Accuracy when each test image is replaced by the worst image an attack "
        f"finds within eps of it (pixels in [0, 1]). {trained}</p>"
    ]
    for r in results:
        label = f"{r['attack']}-{r['steps']}" if r["attack"] == "pgd" else r["attack"]
        rows = [[f"{p['eps']:g}" + (" (clean)" if p["eps"] == 0 else ""), f"{p['accuracy']:.4f}"] for p in r["points"]]
        parts.append(f"<h3>{escape(label)} ({escape(r['norm'])}) on {r['n']} {escape(r['split'])} images of "
                     f"{escape(r['data'])}</h3>" + table(["eps", "accuracy"], rows))
        for key, alt in (("curve", "accuracy against eps"), ("examples", "original, perturbation, adversarial")):
            if Path(r["files"][key]).is_file():
                parts.append(img(Path(r["files"][key]), alt))
    return "".join(parts)
