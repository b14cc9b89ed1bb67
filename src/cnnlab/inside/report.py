"""The report section "Inside the network": filters, feature maps, MLP vs CNN results.

It shows what `cnnlab show` and `cnnlab experiment mlp-vs-cnn` left in a run, and is left out
when there is nothing.
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.inside.pictures import FEATURE_MAPS, FILTERS, INSIDE
from cnnlab.inside.runs import mlp_vs_cnn_record
from cnnlab.report.html import img, table
from cnnlab.run import Run


def section(run: Run) -> str | None:
    parts = []
    folder = run.path / INSIDE
    if (folder / FILTERS).is_file():
        parts.append("<h3>First-layer filters</h3><p>Learned kernels of the first convolution "
                     "(red positive, blue negative weights).</p>" + img(folder / FILTERS, "filters"))
    for maps in sorted(folder.glob(f"{FEATURE_MAPS}*")) if folder.is_dir() else []:
        image = maps.name[len(FEATURE_MAPS):]
        parts.append(f"<h3>Feature maps of {image}</h3>"
                     + "".join(img(png, png.stem) for png in sorted(maps.glob("*.png"))))
    record = mlp_vs_cnn_record(run)
    if record:
        params = [[p["model"], p["layer"], p["formula"], f"{p['params']:,}", f"{p['total']:,}"] for p in record["parameters"]]
        acc = [[m, f"{a['original']:.4f}", f"{a['permuted']:.4f}", f"{a['change_points']:+.2f}"]
               for m, a in record["accuracy"].items()]
        parts.append(
            f"<h3>MLP vs CNN on {record['data']} ({record['epochs']} epochs each, seed {record['seed']})</h3>"
            "<p>One fixed permutation of the pixel positions, applied to every training and test image. "
            "The MLP does not use the pixels' neighbourhood, so its accuracy should not move; the CNN's should drop.</p>"
            + table(["model", "layer", "formula", "parameters", "whole model"], params)
            + table(["model", "original", "permuted", "change (points)"], acc)
            + "".join(img(Path(p), name) for name, p in record["files"].items() if Path(p).is_file())
        )
    if not parts:
        return None
    return "<h2>Inside the network</h2>" + "".join(parts)
