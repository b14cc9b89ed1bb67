"""Attack a trained run: robust accuracy over several eps, the curve, the lecture's picture.

    cnnlab attack RUN --attack pgd --eps 0.02,0.05,0.1

writes RUN/attack/<attack>-<norm>/{robustness.json, accuracy_vs_eps.png, examples.png};
`saved_results` reads the records back for the report's Robustness section and the model card.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from cnnlab.attack.figures import accuracy_vs_eps, adversarial_examples
from cnnlab.attack.robustness import attack_images, check_attack, robust_accuracy
from cnnlab.errors import CnnlabError
from cnnlab.files import slug
from cnnlab.perturb.checks import check_eps
from cnnlab.run import Run

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
    dataset = data if data is not None else run.load_data()
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
