"""The analyses of this package applied to a run: load what it needs, compute, write the
files into RUN/explain/ (PNG figures, JSON numbers, safetensors arrays) and return a record
that the CLI prints; `saved` and `saved_files` read them back for the report and the card.

    RUN/explain/attributions.png      heatmaps of image files; Grad-CAM of a box or a class region
                                      for detection and segmentation runs       (`cnnlab explain IMG`)
    RUN/explain/sanity.json           randomization and deletion checks  (`cnnlab explain --sanity`)
    RUN/explain/influence-IMG.json    TracIn proponents and opponents    (`cnnlab influence --image`)
    RUN/explain/self-influence.json   TracIn self-influence ranking      (`cnnlab influence --self`)
    RUN/explain/label-noise.json      flipped labels found again         (`cnnlab experiment label-noise`)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cnnlab.errors import CnnlabError, unknown_name
from cnnlab.explain import figures
from cnnlab.explain.attribute import METHODS, attribute
from cnnlab.explain.sanity import sanity_checks
from cnnlab.explain.tracin import influence, kept_checkpoints, self_influence
from cnnlab.files import atomic_write, slug
from cnnlab.models import find_layer
from cnnlab.run import Run

FOLDER = "explain"


def folder(run: Run) -> Path:
    path = run.path / FOLDER
    path.mkdir(exist_ok=True)
    return path


def save(run: Run, name: str, record: dict[str, Any]) -> Path:
    """Write `record` as RUN/explain/<name>.json; returns its path."""
    return run.save_result(f"{FOLDER}/{name}", record)


def saved(run: Run, name: str) -> dict[str, Any] | None:
    """The record saved as RUN/explain/<name>.json ('sanity', 'label-noise', ...), or None."""
    return run.results(f"{FOLDER}/{name}")


def saved_files(run: Run) -> list[Path]:
    """Every file the explanations left in RUN/explain/ (figures, records, arrays), sorted."""
    where = run.path / FOLDER
    return sorted(p for p in where.rglob("*") if p.is_file()) if where.is_dir() else []


def parse_methods(text: str) -> list[str]:
    """'all' or a comma-separated list of METHODS, checked."""
    if text == "all":
        return list(METHODS)
    methods = [m.strip() for m in text.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            raise unknown_name("method", m, [*METHODS, "all"])
    return methods


def parse_target(run: Run, target: str | None) -> int | None:
    """A class name ('sneaker') or index ('7') of the run; None = the predicted class."""
    if target is None:
        return None
    if target in run.classes:
        return run.classes.index(target)
    if target.isdigit() and int(target) < len(run.classes):
        return int(target)
    raise CnnlabError(f"--target must be a class of {run.name} or its index 0-{len(run.classes) - 1}; "
                      f"got '{target}' (classes: {', '.join(run.classes)}).")


def _read(run: Run, paths: list[Path]) -> Tensor:
    from cnnlab.data.images import read_image

    c, h, w = run.input_shape
    return torch.stack([read_image(p, c, (h, w)) for p in paths])  # (N, C, H, W)


def _titles(run: Run, x: Tensor) -> tuple[Tensor, Tensor, list[str]]:
    probs = run.predict(x)  # (N, K)
    pred = probs.argmax(1)
    titles = [f"{run.classes[int(p)]} {float(probs[i, p]):.2f}" for i, p in enumerate(pred)]
    return pred, probs, titles


def _summary(a: Tensor) -> dict[str, Any]:
    """What a heatmap says, in numbers: its range, total, and where it peaks."""
    m = a.abs().sum(0)  # (H, W)
    row, col = divmod(int(m.argmax()), m.shape[1])
    return {"min": float(a.min()), "max": float(a.max()), "sum": float(a.sum()), "peak": [row, col]}


def explain_files(
    run: Run, paths: list[Path], methods: list[str], target: str | None = None, layer: str | None = None,
    out: Path | None = None, box: int = 0,
) -> dict[str, Any]:
    """Attribute each method on image files; write the grid PNG and the arrays. A detection or
    segmentation run: Grad-CAM of a box or a class region (`task_explain_files`)."""
    from safetensors.torch import save_file

    if not paths:
        raise CnnlabError("give at least one image file to explain (or --sanity).")
    run.require_images("explain (attribution maps over an image)")
    if layer is not None:
        find_layer(run.model, layer)  # a wrong name fails before any work, whatever the methods
    if run.task.name != "classify":
        if methods not in (list(METHODS), ["gradcam"]):
            raise CnnlabError(f"run {run.name} learned the {run.task.name} task, whose outputs are explained by "
                              "Grad-CAM only; use --method gradcam.")
        return task_explain_files(run, paths, target, layer, box, out)
    x = _read(run, paths)
    pred, probs, titles = _titles(run, x)
    chosen = parse_target(run, target)
    cls = pred if chosen is None else torch.full_like(pred, chosen)
    maps = {m: attribute(run.model, x, cls, m, layer=layer) for m in methods}
    png = Path(out) if out else folder(run) / "attributions.png"
    figures.attribution_grid(x, maps, titles, png, [p.name for p in paths])
    arrays = png.with_suffix(".safetensors")
    atomic_write(arrays, lambda tmp: save_file({m: a.contiguous() for m, a in maps.items()}, str(tmp)))
    images = [
        {
            "image": str(p), "predicted": run.classes[int(pred[i])], "probability": float(probs[i, pred[i]]),
            "explained_class": run.classes[int(cls[i])],
            "methods": {m: _summary(maps[m][i]) for m in methods},
        }
        for i, p in enumerate(paths)
    ]
    return {"run": str(run.path), "images": images, "files": {"grid": str(png), "arrays": str(arrays)}}


def task_explain_files(run: Run, paths: list[Path], target: str | None = None, layer: str | None = None,
                       box: int = 0, out: Path | None = None) -> dict[str, Any]:
    """Grad-CAM on image files for a detection run (the score of each image's `box`-th detected
    box, best first, at any score) or a segmentation run (a class's logits summed over the pixels
    predicted as it, the whole image where none is; the class: `target`, or else the class,
    background aside, that takes most pixels); the grid PNG (the box drawn) and the maps."""
    from safetensors.torch import save_file

    from cnnlab.explain.gradcam import box_gradcam, chosen_boxes, region_gradcam
    from cnnlab.models import eval_mode

    task, model = run.task, run.model
    x = _read(run, paths)
    with eval_mode(model):
        with torch.no_grad():
            outputs = model(x)
        if task.name == "detect":
            if target is not None:  # a class is not what a detector's Grad-CAM explains: say so, never ignore it
                raise CnnlabError(f"run {run.name} learned the detect task, whose Grad-CAM explains one detected box, "
                                  "not a class; choose the box with --box K (0: the top one) instead of --target.")
            found = task.decode(outputs, score_threshold=0.0)
            chosen = chosen_boxes(task.detector, outputs, found, box)
            maps = box_gradcam(model, task.detector, x, chosen, layer)
        elif task.name == "segment":
            predicted = task.decode(outputs)  # (N, H, W)
            chosen_class = parse_target(run, target)
            if chosen_class is None:
                counts = torch.stack([torch.bincount(p.flatten(), minlength=len(run.classes)) for p in predicted])
                counts[:, 0] = torch.where(counts[:, 1:].sum(1) > 0, -1, counts[:, 0])  # background: only if alone
                cls = counts.argmax(1)
            else:
                cls = torch.full((len(x),), chosen_class, dtype=torch.long)
            region = predicted == cls[:, None, None]
            region[region.flatten(1).sum(1) == 0] = True  # a class predicted nowhere: the whole image
            maps = region_gradcam(model, x, cls, region, layer)
        else:
            raise CnnlabError(f"the {task.name} task has no Grad-CAM here; explain a classify, detect or segment run.")

    images, shown, titles = [], [], []
    for i, p in enumerate(paths):
        heat = maps[i, 0]
        if task.name == "detect":
            from cnnlab.tasks.detect import draw_boxes

            k = box
            b, label, score = found[i]["boxes"][k], int(found[i]["labels"][k]), float(found[i]["scores"][k])
            x1, y1, x2, y2 = b.round().long().tolist()
            inside = heat[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)].sum() / heat.sum().clamp_min(1e-12)
            row = {"box": b.tolist(), "class": run.classes[label], "score": score, "rank": k,
                   "share_inside_box": float(inside)}
            shown.append(draw_boxes(x[i], {"boxes": b[None], "labels": torch.tensor([label])}, run.classes, scale=1))
            titles.append(f"box {k}: {run.classes[label]} {score:.2f}")
        else:
            c = int(cls[i])
            row = {"class": run.classes[c], "region_pixels": int(region[i].sum()),
                   "share_inside_region": float((heat * region[i]).sum() / heat.sum().clamp_min(1e-12))}
            shown.append(x[i])
            titles.append(f"{run.classes[c]}: {row['region_pixels']} px")
        images.append({"image": str(p), **row, "gradcam": _summary(maps[i])})
    png = Path(out) if out else folder(run) / "attributions.png"
    figures.attribution_grid(torch.stack(shown), {"gradcam": maps}, titles, png, [Path(p).name for p in paths])
    arrays = png.with_suffix(".safetensors")
    atomic_write(arrays, lambda tmp: save_file({"gradcam": maps.contiguous()}, str(tmp)))
    return {"run": str(run.path), "task": task.name, "images": images, "files": {"grid": str(png), "arrays": str(arrays)}}


def sanity_run(run: Run, n: int = 32, seed: int = 0, layer: str | None = None) -> dict[str, Any]:
    """Randomization and deletion checks on n test images picked at random (seeded)."""
    run.require_classifier("explain --sanity (checks of class attribution maps)")
    test = run.load_data().test
    if len(test) == 0:
        raise CnnlabError(f"{run.name}'s dataset has no test images to check explanations on.")
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:n]
    x = test.x[pick]
    sanity = sanity_checks(run.model, x, seed=seed, layer=layer)
    where = folder(run)
    curves = {r.method: torch.tensor(r.deletion_curve) for r in sanity.methods}
    curves["random"] = torch.tensor(sanity.random_curve)
    files = {"deletion": str(figures.deletion_curves(curves, where / "deletion.png"))}
    shown = x[:6]
    _, _, titles = _titles(run, shown)
    grid = {m: attribute(run.model, shown, None, m, layer=layer) for m in METHODS}
    files["grid"] = str(figures.attribution_grid(shown, grid, titles, where / "sanity-grid.png"))
    record = {"run": str(run.path), "n": len(x), "seed": seed, **sanity.to_dict(), "files": files}
    files["json"] = str(save(run, "sanity", record))
    return record


def influence_run(run: Run, image: Path, k: int = 8) -> dict[str, Any]:
    """The k training images with the most positive (proponents) and most negative
    (opponents) TracIn influence on the run's prediction for `image`."""
    run.require_classifier("TracIn influence (gradients of the predicted class's loss)")
    checkpoints = kept_checkpoints(run.path)
    train = run.load_data().train
    x = _read(run, [image])
    pred, probs, titles = _titles(run, x)
    scores = influence(run.model, checkpoints, train.x, train.y, x, pred)[0]  # (N_train,)
    top, bottom = scores.topk(k).indices, (-scores).topk(k).indices

    def rows(idx: Tensor) -> list[dict[str, Any]]:
        return [{"index": int(i), "label": run.classes[int(train.y[i])], "influence": float(scores[i])} for i in idx]

    record = {
        "run": str(run.path), "image": str(image), "predicted": run.classes[int(pred[0])],
        "probability": float(probs[0, pred[0]]), "checkpoints": [c.path.name for c in checkpoints],
        "proponents": rows(top), "opponents": rows(bottom),
    }
    stem = f"influence-{slug(Path(image).stem)}"
    png = figures.influence_grid(x[0], titles[0], {
        "proponents": (train.x[top], [f"{r['label']}\n{r['influence']:+.3g}" for r in record["proponents"]]),
        "opponents": (train.x[bottom], [f"{r['label']}\n{r['influence']:+.3g}" for r in record["opponents"]]),
    }, folder(run) / f"{stem}.png")
    record["files"] = {"grid": str(png), "json": str(run.result_file(f"{FOLDER}/{stem}"))}
    save(run, stem, record)
    return record


def self_influence_run(run: Run, k: int = 16) -> dict[str, Any]:
    """Training images ranked by TracIn self-influence: the top k are the first to inspect
    for wrong labels."""
    run.require_classifier("TracIn self-influence (gradients of each image's label loss)")
    checkpoints = kept_checkpoints(run.path)
    train = run.load_data().train
    scores = self_influence(run.model, checkpoints, train.x, train.y)
    top = scores.topk(min(k, len(scores))).indices
    ranked = [{"index": int(i), "label": run.classes[int(train.y[i])], "self_influence": float(scores[i])} for i in top]
    labels = [f"#{r['index']} {r['label']}\n{r['self_influence']:.3g}" for r in ranked]
    png = figures.image_row(train.x[top], labels, folder(run) / "self-influence.png")
    record = {
        "run": str(run.path), "checkpoints": [c.path.name for c in checkpoints], "train_images": len(scores),
        "median": float(scores.median()), "top": ranked, "files": {"grid": str(png)},
    }
    record["files"]["json"] = str(save(run, "self-influence", record))
    return record
