"""`cnnlab experiment backdoor`: train one clean and several poisoned models, measure each.

The lecture's "chatbot taught to misbehave by its own users" in image form: how few poisoned
training images does a backdoor need, and does clean accuracy give it away? (It does not.)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from cnnlab.attack.backdoor import add_trigger, attack_success_rate, poisoned_dataset
from cnnlab.errors import CnnlabError
from cnnlab.experiments import folder


def parse_rates(text: str) -> list[float]:
    """'0.005,0.01,0.05' -> [0.005, 0.01, 0.05], each a share of the training set in (0, 1)."""
    try:
        rates = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CnnlabError(f"--rate must be numbers separated by commas, like 0.005,0.01,0.05; got '{text}'.") from None
    bad = [r for r in rates if not 0 < r < 1]
    if not rates or bad:
        raise CnnlabError(f"--rate values must be shares of the training set in (0, 1), like 0.01 for 1%; got '{text}'.")
    return rates


def backdoor_experiment(
    data: str = "fashion-mnist",
    rates: Sequence[float] = (0.005, 0.01, 0.05),
    target: int = 0,
    model: str = "lenet5",
    epochs: int = 5,
    out: str | Path = "runs/backdoor",
    seed: int = 0,
    quiet: bool = False,
    batch_size: int = 128,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train `model` on clean `data` and on each poisoning rate (same seed, same epochs); return
    and save (out/experiment.json, out/examples.png) clean accuracy and attack success per rate."""
    from cnnlab.data import load_data
    from cnnlab.training import TrainConfig, train

    clean = load_data(data)
    if not 0 <= target < clean.num_classes:
        raise CnnlabError(f"--target must be a class index from 0 to {clean.num_classes - 1} of {data}, got {target}.")
    out = folder.claim(out, "backdoor", overwrite)
    config = TrainConfig(model=model, data=data, epochs=epochs, seed=seed, batch_size=batch_size)
    rows = []
    runs = {}
    for rate in [0.0, *rates]:
        start = time.perf_counter()
        dataset = clean if rate == 0 else poisoned_dataset(clean, rate, target, seed)
        run = train(config, data=dataset, out=out / f"rate-{rate:g}", quiet=quiet)
        rows.append({
            "rate": rate,
            "poisoned_images": round(rate * len(clean.train)) if rate else 0,
            "clean_accuracy": run.evaluate(clean).accuracy,
            "attack_success": attack_success_rate(run.model, clean.test.x, clean.test.y, target),
            "run": str(run.path),
            "seconds": time.perf_counter() - start,
        })
        runs[rate] = run
    figure = _examples(runs[sorted(rates)[len(rates) // 2]], clean, target, out / "examples.png")
    record = {"data": data, "model": model, "epochs": epochs, "batch_size": batch_size, "seed": seed, "target": target,
              "target_class": clean.classes[target], "trigger": "4x4 checkerboard, bottom-right corner",
              "rows": rows, "files": {"examples": str(figure)}}
    folder.save(out, "backdoor", record)
    return record


def _examples(run, clean, target: int, path: Path) -> Path:  # noqa: ANN001
    """8 clean test images of other classes and the same 8 with the trigger, as the model sees them."""
    from cnnlab.report.figures import image_grid

    x = clean.test.x[clean.test.y != target][:8]
    y = clean.test.y[clean.test.y != target][:8]
    both = torch.cat([x, add_trigger(x)])
    probs = run.predict(both)
    titles = [
        f"{'triggered' if i >= len(x) else 'clean'}\n{run.classes[int(p.argmax())]} {p.max():.0%}\n(true {run.classes[int(y[i % len(x)])]})"
        for i, p in enumerate(probs)
    ]
    return image_grid(both, titles, path, columns=8)
