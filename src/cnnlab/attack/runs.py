"""Attack a trained run: robust accuracy over several eps, the curve, the lecture's picture.

    cnnlab attack RUN --attack pgd --eps 0.02,0.05,0.1

writes RUN/attack/<attack>-<norm>/{robustness.json, accuracy_vs_eps.png, examples.png}; a
detection or segmentation run is attacked by PGD on its own loss (`attack.tasks`) and writes
RUN/attack/pgd-linf/{robustness.json, score_vs_eps.png, eps-<largest>/ (the task's pictures of
the attacked images)};
`saved_results` reads the records back for the report's Robustness section and the model card.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from cnnlab.attack.figures import accuracy_vs_eps, adversarial_examples
from cnnlab.attack.robustness import attack_images, check_attack, robust_accuracy
from cnnlab.attack.tasks import robust_scores
from cnnlab.errors import CnnlabError
from cnnlab.files import slug
from cnnlab.perturb.checks import check_eps
from cnnlab.run import Run
from cnnlab.tasks.names import label

FOLDER = "attack"
RESULT = "robustness"  # RUN/attack/<attack>-<norm>/robustness.json


def attack_dir(run: Run, attack: str, norm: str = "linf", data: str | None = None) -> Path:
    """RUN/attack/pgd-linf, or RUN/attack/pgd-linf-<data> for another dataset than the run's."""
    other = f"-{slug(data)}" if data and data != run.config.data else ""
    return run.path / FOLDER / f"{attack}-{norm}{other}"


def attack_run(
    run: Run,
    attack: str = "pgd",
    eps: Sequence[float] = (0.02, 0.05, 0.1),
    steps: int = 20,
    norm: str = "linf",
    n: int = 1000,
    split: str = "test",
    data: Any = None,
    examples: int = 4,
    seed: int = 0,
) -> dict[str, Any]:
    """Robust accuracy of `run` on the first `n` images of `split` (of its own dataset, or of
    `data`, a Dataset that must fit the run), at each eps; figures and a JSON record saved in
    the run. Returns that record."""
    check_attack(attack)
    radii = [check_eps(e, norm) for e in eps]
    if n < 1:
        raise CnnlabError(f"--n must be at least 1 image, got {n}.")
    if steps < 1:
        raise CnnlabError(f"--steps must be at least 1, got {steps}.")
    task = run.task
    if task.name != "classify" and (attack, norm) != ("pgd", "linf"):
        raise CnnlabError(
            f"run {run.name} learned the {task.name} task, which is attacked by L-inf PGD on its own loss only "
            f"(fgsm and autoattack attack a classifier's labels); use --attack pgd --norm linf."
        )
    dataset = data if data is not None else run.load_data()
    if task.name != "classify":
        return task_attack_run(run, radii, steps, n, split, dataset, seed)
    part = run.split(dataset, split)
    x, y = part.x[:n], part.y[:n]
    model = run.model.eval()

    result = robust_accuracy(model, x, y, attack, radii, steps=steps, norm=norm, seed=seed)
    folder = attack_dir(run, attack, norm, dataset.name)
    curve = accuracy_vs_eps({result.label: [(p.eps, p.accuracy) for p in result.points]}, folder / "accuracy_vs_eps.png",
                            title=f"{run.name}: {len(x)} {split} images of {dataset.name}", norm=norm)
    picture = _lecture_picture(model, x, y, run.classes, attack, max(radii), steps, norm, examples, seed,
                               folder / "examples.png")
    record = {
        "run": str(run.path), "attack": result.attack, "norm": result.norm, "steps": result.steps,
        "data": dataset.name, "split": split, "n": result.n, "seed": seed,
        "trained_adversarially": run.config.adversarial != "none",
        "points": [p.to_dict() for p in result.points],
        "files": {"curve": str(curve), "examples": str(picture)},
    }
    run.save_result(f"{FOLDER}/{folder.name}/{RESULT}", record)
    return record


def task_attack_run(run: Run, eps: Sequence[float], steps: int, n: int, split: str, dataset: Any,
                    seed: int = 0) -> dict[str, Any]:
    """A detection or segmentation run under PGD on its own loss (`attack.tasks.robust_scores`):
    its score (mAP@0.5, mIoU) and loss at each eps on the first `n` images of `split`, the curve,
    and the task's pictures of the images attacked at the largest eps."""
    from cnnlab.data import Split

    part = run.split(dataset, split)
    x, y = part.x[:n], part.y[:n]
    task = run.task
    result = robust_scores(run.model, task, x, y, eps, steps=steps, seed=seed)
    folder = attack_dir(run, "pgd", "linf", dataset.name)
    name = label(result.metric)
    curve = accuracy_vs_eps({f"pgd-{steps}": [(p.eps, p.score) for p in result.points]}, folder / "score_vs_eps.png",
                            title=f"{run.name}: {len(x)} {split} images of {dataset.name}", ylabel=f"{name} under attack")
    largest = result.points[-1].eps
    pictures = task.pictures(result.outputs, Split(result.adversarial, y), folder / f"eps-{largest:g}")
    record = {
        "run": str(run.path), "task": task.name, "attack": "pgd", "norm": "linf", "steps": steps,
        "data": dataset.name, "split": split, "n": result.n, "seed": seed, "metric": result.metric,
        "trained_adversarially": run.config.adversarial != "none",
        "points": [p.to_dict() for p in result.points],
        "files": {"curve": str(curve), **{f"eps-{largest:g} {k}": str(v) for k, v in pictures.items()
                                           if Path(v).suffix == ".png" and not k.startswith("pr-")}},
    }
    run.save_result(f"{FOLDER}/{folder.name}/{RESULT}", record)
    return record


def _lecture_picture(model, x, y, classes, attack, eps, steps, norm, k, seed, path) -> Path:  # noqa: ANN001
    """The first k images the model gets right, attacked at the largest eps."""
    device = next(model.parameters(), torch.empty(0)).device
    with torch.no_grad():
        right = (model(x.to(device)).argmax(1).cpu() == y).nonzero().flatten()[:k]
    pick = right if len(right) else torch.arange(min(k, len(x)))
    xs, ys = x[pick].to(device), y[pick].to(device)
    torch.manual_seed(seed)
    xa = attack_images(model, xs, ys, attack, eps, steps, norm)
    with torch.no_grad():
        probs, probs_adv = model(xs).softmax(1).cpu(), model(xa).softmax(1).cpu()
    return adversarial_examples(xs.cpu(), xa.cpu(), probs, probs_adv, ys.cpu(), classes, eps, path, attack)


def saved_results(run: Run) -> list[dict[str, Any]]:
    """Every attack record the run holds, in the order of their folders' names."""
    folders = sorted(f.parent.name for f in (run.path / FOLDER).glob(f"*/{RESULT}.json"))
    return [record for name in folders if (record := run.results(f"{FOLDER}/{name}/{RESULT}"))]
