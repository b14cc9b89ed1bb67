"""The report's "Interpretability" section, from the files `cnnlab explain` / `influence` /
`experiment label-noise` wrote into RUN/explain/ (nothing is recomputed here)."""

from __future__ import annotations

from cnnlab.explain.runs import FOLDER, saved
from cnnlab.report.html import img, table
from cnnlab.run import Run


def section(run: Run) -> str | None:
    folder = run.path / FOLDER
    if not folder.is_dir():
        return None
    parts = ["<h2>Interpretability</h2>"]
    if s := saved(run, "sanity"):
        rows = [[m["method"], f"{m['randomization_rho']:.3f}", "flagged" if m["randomization_flagged"] else "ok",
                 f"{m['deletion_auc']:.3f}", f"{s['random_auc']:.3f}"] for m in s["methods"]]
        parts += [
            f"<h3>Are the explanations real? ({s['n']} test images)</h3><p>Rank correlation between the maps of "
            "the trained model and of the same architecture re-initialised (Adebayo et al. 2018): high = the map "
            "does not depend on what was learned (flagged). Deletion AUC (Petsiuk et al. 2018): probability of the "
            "predicted class as pixels are set to 0 in the map's order; lower than random = faithful.</p>",
            table(["method", "rank corr. vs random model", "flag", "deletion AUC", "random AUC"], rows),
            *(img(folder / png, png) for png in ("deletion.png", "sanity-grid.png") if (folder / png).is_file()),
        ]
    if (folder / "attributions.png").is_file():
        parts += ["<h3>Attributions</h3>", img(folder / "attributions.png", "attribution grid")]
    for png in sorted(folder.glob("influence-*.png")):
        parts += [f"<h3>Training images that support and oppose the prediction ({png.stem[10:]}, TracIn)</h3>",
                  img(png, png.stem)]
    if (folder / "self-influence.png").is_file():
        parts += ["<h3>Highest self-influence: check these labels first</h3>",
                  img(folder / "self-influence.png", "self-influence")]
    if r := saved(run, "label-noise"):
        rows = [["TracIn self-influence", f"{r['precision_tracin']:.3f}"], ["per-example loss", f"{r['precision_loss']:.3f}"],
                ["random (base rate)", f"{r['base_rate']:.3f}"]]
        parts += [f"<h3>Label-noise experiment</h3><p>{r['flipped']} of {r['train_images']} training labels flipped; "
                  f"share of flipped labels among the top {r['flipped']} of each ranking:</p>",
                  table(["ranking", "precision"], rows)]
    return "".join(parts) if len(parts) > 1 else None
