"""MLP vs CNN: parameter counts, and the lecture's pixel-permutation test.

The lecture's two complaints about the multilayer perceptron on images:

1. "It would work similarly on any permutation of the pixels!" An MLP's first layer is a
   dense matrix over the flat pixels; shuffling the pixels (the same way for every image)
   only shuffles the columns of that matrix, which training is free to learn shuffled. So its
   accuracy should not move. A CNN's kernels read neighbouring pixels; after a shuffle the
   neighbours are unrelated and its accuracy should drop. (The experiment is the "permuted
   MNIST" of Goodfellow et al. 2013, An Empirical Investigation of Catastrophic Forgetting.)
2. "It has, just on the first layer, as many parameters as there are inputs" (times the
   hidden width): C*H*W*hidden + hidden, against a conv layer's k*k*C_in*C_out + C_out.

`mlp_vs_cnn` trains four runs through `cnnlab.train` (MLP and CNN, on original and on
permuted pixels), with the same seed and hyperparameters, and records the test accuracies in
OUT/experiment.json, which each run's report shows (`cnnlab.inside.runs.mlp_vs_cnn_record`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cnnlab.data import Dataset
from cnnlab.data.dataset import Split
from cnnlab.errors import CnnlabError
from cnnlab.experiments import folder


def fixed_permutation(num_pixels: int, seed: int) -> Tensor:
    """One random order of the H*W pixel positions, a pure function of the seed."""
    return torch.randperm(num_pixels, generator=torch.Generator().manual_seed(seed))


def permute_pixels(x: Tensor, perm: Tensor) -> Tensor:
    """x: (N, C, H, W) -> the same images with pixel k moved from position perm[k].

    Every image and every channel is shuffled by the same `perm` (H*W,), so the picture is
    scrambled but no information is lost: `x` is recovered with `perm.argsort()`.
    """
    n, c, h, w = x.shape
    return x.reshape(n, c, h * w)[:, :, perm].reshape(n, c, h, w)


def permuted_dataset(data: Dataset, perm: Tensor) -> Dataset:
    """The same dataset with train, val and test images all shuffled by one `perm`."""
    def split(s: Split) -> Split:
        return Split(permute_pixels(s.x, perm), s.y)

    meta = {**data.meta, "pixels": f"permuted by one fixed permutation of {len(perm)} positions"}
    return replace(data, train=split(data.train), val=split(data.val), test=split(data.test), meta=meta)


def parameter_comparison(input_shape: tuple[int, int, int], num_classes: int, mlp: str = "mlp",
                         cnn: str = "lenet5") -> list[dict[str, Any]]:
    """First layer and whole-model parameter counts of an MLP and a CNN for the same images.

    Each row has the formula with the numbers filled in, checked against the built layer.
    """
    from cnnlab.models import build_model, count_parameters, first_layer

    c, h, w = input_shape
    rows = []
    with torch.device("meta"):  # counts only: no memory for the weights
        mlp_model = build_model(mlp, input_shape, num_classes)
        cnn_model = build_model(cnn, input_shape, num_classes)
    _, linear = first_layer(mlp_model, nn.Linear, hint=" to compare; choose another --mlp")
    _, conv = first_layer(cnn_model, nn.Conv2d, hint=" to compare; choose another --cnn")
    assert isinstance(linear, nn.Linear) and isinstance(conv, nn.Conv2d)
    n_in, hidden = linear.in_features, linear.out_features
    k1, k2 = conv.kernel_size
    counted = sum(p.numel() for p in linear.parameters())
    assert counted == n_in * hidden + hidden
    rows.append({
        "model": mlp, "layer": "first Linear",
        "formula": f"inputs x hidden + hidden = {c}*{h}*{w} x {hidden} + {hidden}", "params": counted,
        "total": count_parameters(mlp_model),
    })
    counted = sum(p.numel() for p in conv.parameters())
    assert counted == k1 * k2 * conv.in_channels * conv.out_channels + conv.out_channels
    rows.append({
        "model": cnn, "layer": "first Conv2d",
        "formula": f"k x k x C_in x C_out + C_out = {k1}x{k2}x{conv.in_channels}x{conv.out_channels} + {conv.out_channels}",
        "params": counted, "total": count_parameters(cnn_model),
    })
    return rows


def mlp_vs_cnn(
    data: Dataset,
    out: str | Path,
    mlp: str = "mlp",
    cnn: str = "lenet5",
    epochs: int = 3,
    seed: int = 0,
    overwrite: bool = False,
    quiet: bool = False,
) -> dict[str, Any]:
    """Train `mlp` and `cnn` on original and permuted pixels; write OUT/experiment.json.

    All four runs use the same TrainConfig (defaults + `epochs`, `seed`), the permutation is
    drawn from `seed`. Returns the record also written to experiment.json.
    """
    from cnnlab.inside import figures
    from cnnlab.publish import write_report
    from cnnlab.run import Run
    from cnnlab.training import TrainConfig, train

    if epochs < 1:
        raise CnnlabError("--epochs must be at least 1.")
    out = folder.claim(out, "mlp-vs-cnn", overwrite)
    c, h, w = data.input_shape
    perm = fixed_permutation(h * w, seed)
    datasets = {"original": data, "permuted": permuted_dataset(data, perm)}
    config = TrainConfig(data=data.name, epochs=epochs, seed=seed)

    accuracy: dict[str, dict[str, float]] = {}
    runs: dict[str, str] = {}
    for model in (mlp, cnn):
        accuracy[model] = {}
        for pixels, dataset in datasets.items():
            name = model if pixels == "original" else f"{model}-permuted"
            if not quiet:
                print(f"training {name} on {data.name} ({epochs} epochs)", flush=True)
            run = train(config, model=model, data=dataset, out=out / name, quiet=quiet)
            accuracy[model][pixels] = run.test_result()["test_acc"]
            runs[name] = str(run.path)
        accuracy[model]["change_points"] = 100 * (accuracy[model]["permuted"] - accuracy[model]["original"])

    files = {
        "permutation": str(figures.permutation_figure(data.test.x[:8], permute_pixels(data.test.x[:8], perm),
                                                      out / "figures" / "permutation.png")),
        "accuracy": str(figures.accuracy_figure(accuracy, out / "figures" / "accuracy.png")),
    }
    record = {
        "data": data.name,
        "input_shape": [c, h, w],
        "train_images": len(data.train),
        "test_images": len(data.test),
        "epochs": epochs,
        "seed": seed,
        "permutation": {"seed": seed, "positions": h * w, "same_for": "every image, channel and split"},
        "parameters": parameter_comparison((c, h, w), data.num_classes, mlp, cnn),
        "accuracy": accuracy,
        "claims": {
            "mlp_within_1_point": abs(accuracy[mlp]["change_points"]) < 1.0,
            "cnn_loses_at_least_3_points": accuracy[cnn]["change_points"] <= -3.0,
        },
        "runs": runs,
        "files": files,
    }
    folder.save(out, "mlp-vs-cnn", record)
    for path in runs.values():  # each run's report shows the experiment beside its own results
        write_report(Run.load(path))
    return {"experiment": "mlp-vs-cnn", **record}

