"""The detector that needs no mark: a classifier trained fresh to tell real images from a
generator's, and its accuracy on images it never saw (0.5: the two cannot be told apart).

A mark (`cnnlab.report.marks`) is gone after any re-encode; what a generator draws keeps its
statistics. This is the forensic approach of Wang et al. 2020 ("CNN-generated images are
surprisingly easy to spot... for now"), here at its smallest: one cnnlab classification run on
two classes, real and generated, trained and scored like any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cnnlab.data import Dataset, Split
from cnnlab.errors import CnnlabError
from cnnlab.generate.sample import require_generator, sample_images
from cnnlab.run import Run
from cnnlab.training import train

CLASSES = ["real", "generated"]
DETECTOR = "generate/detector"  # the detector's own run, inside the generator's run folder
EPOCHS = 5


def detector_data(run: Run, n: int, seed: int) -> Dataset:
    """n real and n generated images for training (a tenth held for validation), n // 2 of each
    for the test: real ones from the dataset's own train and test splits, generated ones from
    latent vectors the samples of `seed` never use (offset by 1,000,003)."""
    data = run.load_data()
    test_n = n // 2
    if len(data.train) < n or len(data.test) < test_n or n < 20:
        raise CnnlabError(f"the detector needs --n of 20 or more, at most {len(data.train):,} (training images of "
                          f"{data.name}) with half as many test images ({len(data.test):,}); got {n}.")
    g = torch.Generator().manual_seed(seed)
    real_train = data.train.x[torch.randperm(len(data.train), generator=g)[:n]]
    real_test = data.test.x[torch.randperm(len(data.test), generator=g)[:test_n]]
    fake, _ = sample_images(run, n + test_n, None, seed + 1_000_003)
    x = torch.cat([real_train, fake[:n]])
    y = torch.cat([torch.zeros(n), torch.ones(n)]).long()
    order = torch.randperm(2 * n, generator=g)
    x, y = x[order], y[order]
    val = max(2, n // 10)
    test = Split(torch.cat([real_test, fake[n:]]), torch.cat([torch.zeros(test_n), torch.ones(test_n)]).long())
    return Dataset(name=f"real-vs-{run.name}", classes=CLASSES, train=Split(x[val:], y[val:]), val=Split(x[:val], y[:val]),
                   test=test, source=f"{data.name} and run {run.name}")


def train_detector(run: Run, n: int = 2000, seed: int = 0, model: str = "lenet5", epochs: int = EPOCHS) -> dict[str, Any]:
    """Train `model` on real vs generated (`detector_data`) as the run RUN/generate/detector;
    its held-out accuracy is the machine's score at "which one is real?". Saved as
    RUN/generate/detector.json."""
    require_generator(run)
    data = detector_data(run, n, seed)
    detector = train(model=model, data=data, out=Path(run.path / DETECTOR), overwrite=True, quiet=True, epochs=epochs,
                     seed=seed, optimizer="adam")
    test = detector.test_result() or {}
    result = {"run": run.name, "detector": str(detector.path), "model": model, "epochs": epochs,
              "train_images": len(data.train), "test_images": len(data.test), "accuracy": test.get("test_acc"),
              "note": "held-out accuracy of a classifier trained fresh on real vs generated images; 0.5: indistinguishable"}
    run.save_result("generate/detector", result)
    return result
