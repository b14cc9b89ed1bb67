"""Commands of issue #5 (robustness): `cnnlab attack RUN` and `cnnlab experiment backdoor`.

Thin: parse, call `cnnlab.attack`, print a table or one JSON document.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cnnlab.cli import JsonFlag, _emit, _table, app, experiment, out


@app.command()
def attack(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory.")],
    attack_name: Annotated[str, typer.Option("--attack", help="fgsm, pgd (ours) or autoattack (torchattacks).")] = "pgd",
    eps: Annotated[str, typer.Option(help="Radii to attack at, comma-separated; pixels are in [0, 1].")] = "0.02,0.05,0.1",
    steps: Annotated[int, typer.Option(help="PGD steps.")] = 20,
    norm: Annotated[str, typer.Option(help="linf or l2 (l2: pgd and autoattack).")] = "linf",
    n: Annotated[int, typer.Option("--n", help="Attack the first N images of the split.")] = 1000,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    data: Annotated[Optional[str], typer.Option(help="Attack images of this dataset instead of the run's own.")] = None,
    weights: Annotated[str, typer.Option(help="model (last epoch) or best.")] = "model",
    seed: Annotated[int, typer.Option(help="Seed of the random starts.")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Robust accuracy at each eps, the accuracy-vs-eps curve and adversarial examples (saved in RUN/attack/)."""
    from cnnlab.perturb.checks import check_eps
    from cnnlab.attack.robustness import check_attack, parse_eps
    from cnnlab.attack.runs import attack_run
    from cnnlab.run import Run

    check_attack(attack_name)
    radii = parse_eps(eps) if norm == "linf" else [check_eps(float(e), norm) for e in eps.split(",") if e.strip()]
    if attack_name == "autoattack":
        from cnnlab.attack.reference import torchattacks

        torchattacks()  # fail before loading anything if the extra is missing
    run = Run.load(run_dir, weights=weights)
    dataset = None
    if data:
        from cnnlab.data import load_data

        c, h, w = run.input_shape
        dataset = load_data(data, image_size=h)
    record = attack_run(run, attack_name, radii, steps=steps, norm=norm, n=n, split=split, data=dataset, seed=seed)
    if as_json:
        _emit(record)
        return
    label = f"{attack_name}-{steps}" if attack_name == "pgd" else attack_name
    rows = [[f"{p['eps']:g}" + (" (clean)" if p["eps"] == 0 else ""), f"{p['accuracy']:.4f}", f"{p['seconds']:.1f}"]
            for p in record["points"]]
    out.print(_table(f"{label} ({norm}) on {record['n']} {split} images of {record['data']}",
                     ["eps", "accuracy", "seconds"], rows))
    for name, path in record["files"].items():
        out.print(f"{name}: {path}")


@experiment.command()
def backdoor(
    data: Annotated[str, typer.Option(help="Dataset to poison.")] = "fashion-mnist",
    rate: Annotated[str, typer.Option(help="Poisoning rates, comma-separated shares of the training set.")] = "0.005,0.01,0.05",
    target: Annotated[int, typer.Option(help="Class index the trigger should send images to.")] = 0,
    model: Annotated[str, typer.Option(help="Model name.")] = "lenet5",
    epochs: Annotated[int, typer.Option(help="Epochs of each training (clean and poisoned).")] = 5,
    batch_size: Annotated[int, typer.Option(help="Images per optimizer step.")] = 128,
    seed: Annotated[int, typer.Option(help="Seed of the training and of the poisoned images' choice.")] = 0,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Folder for the runs (default runs/backdoor-DATA).")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """BadNets (Gu et al. 2017): clean accuracy and attack success for each poisoning rate."""
    from cnnlab.experiments.backdoor import backdoor_experiment, parse_rates
    from cnnlab.errors import CnnlabError
    from cnnlab.files import slug

    rates = parse_rates(rate)
    if epochs < 1:
        raise CnnlabError("--epochs must be at least 1.")
    folder = out_dir or Path("runs") / f"backdoor-{slug(data)}"
    record = backdoor_experiment(data, rates, target, model, epochs, folder, seed, quiet=quiet or as_json,
                                 batch_size=batch_size)
    if as_json:
        _emit(record)
        return
    rows = [[f"{r['rate']:.1%}" + (" (clean)" if r["rate"] == 0 else ""), r["poisoned_images"],
             f"{r['clean_accuracy']:.4f}", f"{r['attack_success']:.4f}"] for r in record["rows"]]
    out.print(_table(f"BadNets on {data}, {model}, {epochs} epochs, target class {target} ({record['target_class']})",
                     ["poisoned", "images", "clean accuracy", "attack success"], rows))
    out.print(f"examples: {record['files']['examples']}")
