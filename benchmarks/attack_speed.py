"""Is cnnlab's readable PGD as fast as the library's? PGD-20, L-inf, against torchattacks.

Both attack the same model (cnnlab's LeNet-5, weights of RUN if given, else freshly
initialised) on the same batch of test images with the same settings (eps, 20 steps of
2.5 * eps / 20, random start), in eval mode. They run interleaved in one process, `--repeats`
times; the best time of each is compared. The robust accuracies are printed too: with the
same seed both draw the same random start, so they should agree to the image.

Printed: images/s of each and the ratio ours / torchattacks (>= 1 means ours is as fast or
faster). Results: docs/benchmarks.md.

    python benchmarks/attack_speed.py [--run runs/fmnist-lenet5-std] [--data fashion-mnist] \
        [--n 1000] [--eps 0.1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from cnnlab.attack import pgd
from cnnlab.attack.reference import reference_pgd


def timed(attack, model, x, y, eps, steps, seed):  # noqa: ANN001
    torch.manual_seed(seed)
    start = time.perf_counter()
    x_adv = attack(model, x, y, eps, steps=steps)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        accuracy = (model(x_adv).argmax(1) == y).float().mean().item()
    return seconds, accuracy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="", help="a run directory whose model to attack")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--n", type=int, default=1000, help="images in the batch")
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.run:
        from cnnlab.run import Run

        run = Run.load(args.run)
        model, data = run.model, run.load_data()
    else:
        from cnnlab.data import load_data
        from cnnlab.models import build_model

        data = load_data(args.data)
        torch.manual_seed(0)
        model = build_model("lenet5", data.input_shape, data.num_classes, *data.stats())
    model.eval()
    x, y = data.test.x[: args.n], data.test.y[: args.n]

    ours, theirs = [], []
    for _ in range(args.repeats):  # interleaved, so a load change on the machine hits both
        ours.append(timed(pgd, model, x, y, args.eps, args.steps, seed=1))
        theirs.append(timed(reference_pgd, model, x, y, args.eps, args.steps, seed=1))
    best_ours, best_theirs = min(s for s, _ in ours), min(s for s, _ in theirs)
    result = {
        "model": args.run or "lenet5 (untrained)", "data": data.name, "n": len(x), "eps": args.eps,
        "steps": args.steps, "repeats": args.repeats, "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "ours_images_per_s": len(x) / best_ours, "torchattacks_images_per_s": len(x) / best_theirs,
        "ratio_ours_over_torchattacks": best_theirs / best_ours,
        "robust_accuracy_ours": ours[0][1], "robust_accuracy_torchattacks": theirs[0][1],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"PGD-{args.steps}, eps {args.eps}, {len(x)} images of {data.name}, {result['model']}, "
          f"best of {args.repeats}, {result['threads']} threads, torch {torch.__version__}")
    print(f"  cnnlab.perturb.pgd   {result['ours_images_per_s']:8.1f} images/s   robust accuracy {ours[0][1]:.4f}")
    print(f"  torchattacks.PGD    {result['torchattacks_images_per_s']:8.1f} images/s   robust accuracy {theirs[0][1]:.4f}")
    print(f"  ratio ours / torchattacks: {result['ratio_ours_over_torchattacks']:.3f}")


if __name__ == "__main__":
    main()
