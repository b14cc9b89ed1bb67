"""What does a whole `cnnlab train` process cost over a plain PyTorch script? One LeNet-5 epoch.

Two commands do the same work (read the gzipped Fashion-MNIST files, hold out 10% for
validation, train LeNet-5 one epoch, score validation and test):

    cnnlab train --model lenet5 --data fashion-mnist --epochs 1     (energy measured: the default)
    python benchmarks/plain_fmnist.py

Each runs as a fresh process, interleaved, `--repeats` times; the clock is the whole process
(interpreter start, imports, data, training, files, exit), as a user waits for it. Printed: each
wall time, the best of each and the ratio cnnlab / plain (target <= 1.15), and the energy
method the cnnlab run recorded (proof that it measured). `--parts` also times, in this process,
what `cnnlab train` pays before its first step.

Evidence (2 cores, torch 2.14.1 CPU, Python 3.11.7; docs/benchmarks.md): best of 3 on a machine
otherwise idle, 2026-12-02: cnnlab 6.77 s, plain 5.99 s, ratio 1.130. What start-up cut, A/B in
fresh processes: `import torchvision` for its version 1.81 s -> 0.00 s (package metadata), and the
scene datasets importing torchvision at their top (~1.4 s, every training); CodeCarbon start + stop
1.69 s -> 0.09 s (its load-based estimate computed directly, cnnlab/energy.py); sha256 of the
Fashion-MNIST-sized splits 0.46 s -> 0.29 s (no copy).

    python benchmarks/startup.py [--repeats 3] [--data-dir /usr/share/datasets/fashion-mnist] [--parts]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one process run to its end; raises if it fails."""
    before = os.times()
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = os.times()
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def parts(data_dir: Path) -> None:
    """Seconds of each thing `cnnlab train` does before its first step, timed here one by one."""
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        print(f"  {name:<50} {now - clock:6.3f} s")
        clock = now

    import torch  # noqa: F401

    lap("import torch")
    import cnnlab.cli  # noqa: F401

    lap("import cnnlab.cli (typer, rich)")
    from cnnlab import energy, provenance
    from cnnlab.data import load_data
    from cnnlab.models import build_model
    from cnnlab.training import TrainConfig  # noqa: F401

    lap("import cnnlab.training, .data, .models")
    data = load_data("fashion-mnist", data_dir=data_dir)
    lap("load Fashion-MNIST (gunzip 4 IDX files, split)")
    stats = data.stats()
    lap("per-channel mean and std")
    build_model("lenet5", data.input_shape, data.num_classes, *stats)
    lap("build LeNet-5")
    data.sha256()
    lap("sha256 of the three splits")
    provenance.versions()
    lap("library versions")
    provenance.git_commit()
    lap("git commit (two git subprocesses)")
    os.environ["CNNLAB_ENERGY"] = "1"
    with energy.track(None, "nothing"):
        lap("energy: start measuring")
    lap("energy: stop measuring (first stage of a process)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--parts", action="store_true", help="also time what cnnlab pays before its first step")
    args = parser.parse_args()

    env = {**os.environ, "CNNLAB_ENERGY": "1"}  # the default; set in case the caller's shell turned it off
    plain_cmd = [sys.executable, str(HERE / "plain_fmnist.py"), "--data-dir", str(args.data_dir)]
    walls: dict[str, list[float]] = {"plain": [], "cnnlab": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            run = Path(tmp) / f"run{r}"
            cnnlab_cmd = [sys.executable, "-m", "cnnlab", "train", "--model", "lenet5", "--data", "fashion-mnist",
                          "--data-dir", str(args.data_dir), "--epochs", "1", "--out", str(run), "--quiet"]
            for name, command in (("plain", plain_cmd), ("cnnlab", cnnlab_cmd)):
                wall, cpu = timed(command, env)
                walls[name].append(wall)
                print(f"repeat {r + 1}: {name:<6} {wall:6.2f} s wall, {cpu:6.2f} s CPU", flush=True)
            stages = json.loads((run / "energy.json").read_text())["stages"]
        method = {s["stage"]: s.get("method", s.get("error", s.get("skipped"))) for s in stages}

    best = {name: min(w) for name, w in walls.items()}
    ratio = best["cnnlab"] / best["plain"]
    print(json.dumps({"repeats": args.repeats, "walls_s": walls, "best_s": best, "ratio": ratio,
                      "energy_method": method["training"]}, indent=2))
    print(f"whole-process wall, best of {args.repeats}: cnnlab train {best['cnnlab']:.2f} s, plain PyTorch "
          f"{best['plain']:.2f} s, ratio {ratio:.3f} (target <= 1.15)")
    if args.parts:
        print("what cnnlab train pays before its first step (this process, one at a time):")
        parts(args.data_dir)


if __name__ == "__main__":
    main()
