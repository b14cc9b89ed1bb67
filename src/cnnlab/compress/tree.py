"""CNN Tree: group the classes a flat classifier confuses, then learn the groups and each group apart.

1. Hierarchy (the confusion-set trees of the lecture; Yan et al. 2015, HD-CNN, section 3.3,
   clusters the symmetrised confusion matrix; here agglomerative, average linkage): from the
   flat run's validation confusion, E_ij = the share of class i's mistakes that say j, and
   A = (E + E^T) / 2 is a similarity between classes; average-linkage clustering on the
   distance max(A) - A builds the dendrogram. `--groups auto` cuts it where the mean share
   between two clusters falls under AUTO_SHARE; `--groups N` cuts it into N groups; a JSON
   file gives the groups by class name.
   Why shares of mistakes, not rates: rates rank pairs by how hard each class is, so a class
   seldom wrong never joins. On Fashion-MNIST's LeNet-5, dresses are taken for coats at 2.4%
   and sandals for sneakers at 0.9%, so any cut of a rate dendrogram puts dresses with the
   tops before sandals with the shoes; yet all of a sandal's few mistakes are shoes. The
   price: a class with very few mistakes gets large shares from them, so a stray one can pull
   it into a group; `--groups N` or a file then overrides the cut.
2. A root network (the flat run's architecture) learns the group of each image; a leaf network
   per group of at least 2 classes learns the class within its group; all trained with the
   flat run's config through `cnnlab.train`, each a run of its own under OUT/parts/.
3. The tree is one `nn.Module` (cnnlab.models.tree.TreeNet): P(class) = P(group) * P(class | group).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cnnlab.compress import derive
from cnnlab.data import Dataset, Split
from cnnlab.errors import CnnlabError
from cnnlab.models.tree import TreeNet, class_to_group
from cnnlab.report.figures import pyplot, save_figure
from cnnlab.run import Run
from cnnlab.tasks.classify import evaluate
from cnnlab.training.api import train

# Two clusters join while, on average, at least 15% of one's mistakes go to the other. On the
# validation and the test confusion of a LeNet-5 on Fashion-MNIST (docs/results.md) the merges
# run 0.77 ... 0.35, 0.19 (the four tops), then 0.11 and below: the cut falls in that gap, and
# gives {T-shirt/top, Pullover, Coat, Shirt}, {Sandal, Sneaker, Ankle boot}, {Trouser, Dress}, {Bag}.
AUTO_SHARE = 0.15


def affinity(confusion: Tensor) -> Tensor:
    """(K, K) symmetric: (E + E^T) / 2, E_ij = the share of class i's mistakes predicted as j (0
    for a class never wrong); diagonal 0."""
    off = confusion.double().clone()
    off.fill_diagonal_(0)
    shares = off / off.sum(1, keepdim=True).clamp_min(1)
    return (shares + shares.T) / 2


def linkage(confusion: Tensor) -> Any:
    """scipy's average-linkage matrix over the distance max(A) - A between classes."""
    from scipy.cluster.hierarchy import linkage as scipy_linkage
    from scipy.spatial.distance import squareform

    a = affinity(confusion)
    d = (a.max() - a).numpy()
    d[range(len(d)), range(len(d))] = 0
    return scipy_linkage(squareform(d, checks=False), method="average")


def find_groups(confusion: Tensor, groups: int | None = None, threshold: float = AUTO_SHARE) -> list[list[int]]:
    """Class indices of each group, groups by their smallest class: `groups` of them, or
    (None) as many as cutting the dendrogram at a mean share of mistakes `threshold` leaves."""
    from scipy.cluster.hierarchy import cut_tree, fcluster

    k = confusion.shape[0]
    if groups is not None and not 2 <= groups < k:
        raise CnnlabError(f"--groups must be from 2 to {k - 1} for {k} classes (or auto, or a file), got {groups}.")
    z = linkage(confusion)
    labels = None
    if groups is None:
        labels = fcluster(z, t=float(affinity(confusion).max()) - threshold, criterion="distance")
        groups = 2 if len(set(labels)) < 2 else None
    if groups is not None:  # by the order of the merges: exactly `groups` even where distances tie
        labels = cut_tree(z, n_clusters=groups).flatten()
    found: dict[int, list[int]] = {}
    for c, label in enumerate(labels):
        found.setdefault(int(label), []).append(c)
    out = sorted(found.values())
    if all(len(g) == 1 for g in out):
        raise CnnlabError(f"no two classes share {threshold:.0%} of their mistakes, so auto finds no groups; "
                          "give --groups N or a file of groups.")
    return out


def groups_from_file(file: Path, classes: list[str]) -> list[list[int]]:
    """Groups from a JSON file: a list of lists of class names; classes it leaves out stand alone."""
    try:
        doc = json.loads(Path(file).read_text())
    except FileNotFoundError:
        raise CnnlabError(f"groups file {file} does not exist.") from None
    except ValueError as e:
        raise CnnlabError(f"groups file {file} is not JSON ({e}); write a list of lists of class names.") from None
    if not (isinstance(doc, list) and all(isinstance(g, list) and g and all(isinstance(c, str) for c in g) for g in doc)):
        raise CnnlabError(f"groups file {file} must hold a list of lists of class names, like [[\"Shirt\", \"Coat\"]].")
    named = [c for g in doc for c in g]
    unknown = sorted(set(named) - set(classes))
    if unknown or len(named) != len(set(named)):
        what = f"unknown classes {unknown} (the run's: {classes})" if unknown else "a class twice"
        raise CnnlabError(f"groups file {file} names {what}.")
    groups = [sorted(classes.index(c) for c in g) for g in doc]
    groups += [[i] for i, c in enumerate(classes) if c not in named]
    if len(groups) < 2:
        raise CnnlabError(f"groups file {file} puts every class in one group; a tree needs at least 2 groups.")
    return sorted(groups)


def choose_groups(parent: Run, spec: str, confusion: Tensor) -> list[list[int]]:
    """--groups: 'auto', a number, or a JSON file."""
    if spec == "auto":
        return find_groups(confusion)
    if spec.isdigit():
        return find_groups(confusion, int(spec))
    return groups_from_file(Path(spec), parent.classes)


def relabel(split: Split, table: Tensor, keep: Tensor | None = None) -> Split:
    """The images of `split` whose class `keep` holds (all if None), labels mapped through `table`."""
    mask = torch.ones(len(split), dtype=torch.bool) if keep is None else torch.isin(split.y, keep)
    return Split(split.x[mask], table[split.y[mask]])


def part_data(data: Dataset, groups: list[list[int]], group: int | None) -> Dataset:
    """The root's data (group: None): every image labelled with its group; or a leaf's: the
    images of one group labelled by their place in it."""
    if group is None:
        table, keep, classes = class_to_group(groups), None, ["+".join(data.classes[c] for c in g) for g in groups]
    else:
        members = groups[group]
        table = torch.full((len(data.classes),), -1, dtype=torch.int64)
        table[members] = torch.arange(len(members))
        keep, classes = torch.tensor(members), [data.classes[c] for c in members]
    name = f"{data.name}-groups" if group is None else f"{data.name}-group{group}"
    return Dataset(name, classes, *(relabel(s, table, keep) for s in (data.train, data.val, data.test)),
                   source=data.source, licence=data.licence)


def dendrogram(confusion: Tensor, classes: list[str], groups: list[list[int]], path: Path) -> Path:
    """The hierarchy as a picture: classes joined at their mean mutual confusion."""
    from scipy.cluster.hierarchy import dendrogram as scipy_dendrogram

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    top = float(affinity(confusion).max())
    scipy_dendrogram(linkage(confusion), labels=classes, ax=ax, leaf_rotation=60, color_threshold=0)
    ax.axhline(top - AUTO_SHARE, color="gray", ls="--", lw=1)
    ax.text(ax.get_xlim()[1], top - AUTO_SHARE, " auto cut", va="center", fontsize=8, color="gray")
    ticks = ax.get_yticks()
    ax.set_yticks(ticks)  # drawn as distances max(A) - A; labelled as the shares themselves
    ax.set_yticklabels([f"{top - t:.2f}" for t in ticks])
    ax.set_ylim(0, top)
    ax.set_ylabel("mean share of mistakes between\n(joined lower = confused more)")
    ax.set_title("classes joined by how often the flat run confuses them\n"
                 + "; ".join("{" + ", ".join(classes[c] for c in g) + "}" for g in groups if len(g) > 1), fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def tree_run(parent: Run, out: str | Path, groups: str = "auto", epochs: int | None = None, overwrite: bool = False,
             quiet: bool = False) -> tuple[Run, dict[str, Any]]:
    """Build the CNN Tree of `parent` (a flat classifier run) as a new run in `out`; return it and
    its report (also saved as OUT/tree.json): flat vs tree on the test split."""
    parent.require_classifier("a CNN Tree")
    out = Path(out)
    data = parent.load_data()
    if len(data.val) == 0:
        raise CnnlabError(f"run {parent.name} has no validation split to read confusions from; train it with --val-fraction above 0.")
    flat_val = evaluate(parent.model, data.val.x, data.val.y, parent.classes)
    chosen = choose_groups(parent, groups, flat_val.confusion)
    cfg = parent.config if epochs is None else replace(parent.config, epochs=epochs)
    if (out.exists() and any(out.iterdir())) and not overwrite:
        raise CnnlabError(f"{out} already holds files; choose another --out (or --overwrite to replace it).")
    # the run directory first (its parts train inside it); its model is the tree once they are trained
    run = derive.start(parent, out, {"method": "tree", "groups": chosen}, parent.model, data, overwrite)
    parts = [("root", None)] + [(f"leaf{g}", g) for g, members in enumerate(chosen) if len(members) > 1]
    nets = {}
    for name, group in parts:
        part = train(cfg, model=cfg.model, data=part_data(data, chosen, group), out=out / "parts" / name,
                     quiet=quiet, recipe="none", budget=0.0)
        nets[name] = part.model
    run.model = TreeNet(nets["root"], [nets[n] for n, g in parts[1:]], chosen).eval()
    run.provenance["derived"]["parts"] = [str(out / "parts" / name) for name, _ in parts]
    derive.finish_untrained(run, data)
    report = tree_report(parent, run, data, chosen, flat_val.confusion)
    run.save_result("tree", report)
    return run, report


def tree_report(flat: Run, tree: Run, data: Dataset, groups: list[list[int]], confusion: Tensor) -> dict[str, Any]:
    """Flat vs tree on the test split: accuracy, per group, the root's, size and speed of both."""
    test = data.test
    flat_pred = evaluate(flat.model, test.x, test.y, flat.classes).y_pred
    tree_eval = evaluate(tree.model, test.x, test.y, tree.classes)
    tree_pred = tree_eval.y_pred
    table = class_to_group(groups)
    model: TreeNet = tree.model  # type: ignore[assignment]
    with torch.inference_mode():
        root_pred = torch.cat([model.root(test.x[i : i + 512]).argmax(1) for i in range(0, len(test), 512)])
    by_group = []
    for g, members in enumerate(groups):
        mask = torch.isin(test.y, torch.tensor(members))
        by_group.append({
            "group": [flat.classes[c] for c in members],
            "images": int(mask.sum()),
            "flat_accuracy": float((flat_pred[mask] == test.y[mask]).float().mean()) if mask.any() else None,
            "tree_accuracy": float((tree_pred[mask] == test.y[mask]).float().mean()) if mask.any() else None,
            "root_accuracy": float((root_pred[mask] == g).float().mean()) if mask.any() else None,
        })
    flat_acc = float((flat_pred == test.y).float().mean())
    tree_acc = tree_eval.accuracy
    gain = 100 * (tree_acc - flat_acc)
    times = sum(p.numel() for p in model.parameters()) / max(sum(p.numel() for p in flat.model.parameters()), 1)
    verdict = (f"the tree is {abs(gain):.2f} points " + ("better than" if gain > 0 else "worse than" if gain < 0 else "level with")
               + f" the flat network on {len(test):,} test images, with {times:.1f}x its parameters")
    shape = tuple(flat.input_shape)
    return {
        "flat_run": str(flat.path),
        "tree_run": str(tree.path),
        "groups": [[flat.classes[c] for c in g] for g in groups],
        "flat_accuracy": flat_acc,
        "tree_accuracy": tree_acc,
        "root_accuracy": float((root_pred == table[test.y]).float().mean()),
        "by_group": by_group,
        "flat_size": derive.size_of(flat.model, shape, flat.path / "model.safetensors"),
        "tree_size": derive.size_of(model, shape, tree.path / "model.safetensors"),
        "verdict": verdict,
        "figures": {"dendrogram": str(dendrogram(confusion, flat.classes, groups, tree.path / "figures" / "dendrogram.png"))},
    }
