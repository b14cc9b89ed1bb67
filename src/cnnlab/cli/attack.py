"""`cnnlab attack RUN`: robust accuracy of a trained run under adversarial attacks."""

from __future__ import annotations

from typing import Annotated

import typer

from cnnlab.cli.options import RunArg, Weights
from cnnlab.cli.output import JsonFlag, console, emit, table


def attack(
    run_dir: RunArg,
    attack_name: Annotated[str, typer.Option("--attack", help="fgsm, pgd (ours) or autoattack (torchattacks).")] = "pgd",
    eps: Annotated[str, typer.Option(help="Radii to attack at, comma-separated; pixels are in [0, 1].")] = "0.02,0.05,0.1",
    steps: Annotated[int, typer.Option(help="PGD steps.")] = 20,
    norm: Annotated[str, typer.Option(help="linf or l2 (l2: pgd and autoattack).")] = "linf",
    n: Annotated[int, typer.Option("--n", help="Attack the first N images of the split.")] = 1000,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    data: Annotated[str | None, typer.Option(help="Attack images of this dataset instead of the run's own.")] = None,
    weights: Weights = "model",
    seed: Annotated[int, typer.Option(help="Seed of the random starts.")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Robust accuracy at each eps, the accuracy-vs-eps curve and adversarial examples (saved in RUN/attack/);
    a detector's mAP@0.5 or a segmenter's mIoU under PGD on its own loss."""
    from cnnlab.attack.robustness import check_attack, parse_eps
    from cnnlab.attack.runs import attack_run
    from cnnlab.run import Run
    from cnnlab.tasks.names import label

    check_attack(attack_name)
    radii = parse_eps(eps, norm)
    if attack_name == "autoattack":
        from cnnlab.attack.reference import torchattacks

        torchattacks()  # fail before loading anything if the extra is missing
    run = Run.load(run_dir, weights=weights)
    dataset = None
    if data:
        from cnnlab.data import load_data

        dataset = load_data(data, image_size=run.input_shape[1])
    record = attack_run(run, attack_name, radii, steps=steps, norm=norm, n=n, split=split, data=dataset, seed=seed)
    if as_json:
        emit(record)
        return
    metric = label(record.get("metric", "accuracy"))
    title = f"{attack_name}-{steps}" if attack_name == "pgd" else attack_name
    rows = [[f"{p['eps']:g}" + (" (clean)" if p["eps"] == 0 else ""), f"{p.get('score', p.get('accuracy')):.4f}",
             f"{p['seconds']:.1f}"] for p in record["points"]]
    console.print(table(f"{title} ({norm}) on {record['n']} {split} images of {record['data']}",
                        ["eps", metric, "seconds"], rows))
    for name, path in record["files"].items():
        console.print(f"{name}: {path}")
