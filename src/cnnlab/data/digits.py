"""Digits: 1,797 handwritten digits that ship inside scikit-learn, so they work on any machine.

The UCI "Optical Recognition of Handwritten Digits" set (Alpaydin & Kaynak 1998): 8x8 images
of 17 gray levels (0..16). They are upsampled to 28x28, the MNIST size, so every model and
tool written for MNIST runs on them unchanged; the test split is a fixed 20%.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnlab.data.dataset import Dataset, Split, stratified_split
from cnnlab.data.registry import DataOptions, register_dataset
from cnnlab.errors import CnnlabError

SIDE = 28  # the MNIST side
TEST_FRACTION = 0.2


@register_dataset("digits", "1,797 handwritten digits 0-9 (scikit-learn, offline), 8x8 upsampled to 28x28")
def digits(arg: str | None, opts: DataOptions) -> Dataset:
    """Train 70% / val 10% / test 20% of all images, stratified, seed 0.

    Here `val_fraction` is a share of all 1,797 images (the default 0.1 gives 70/10/20).
    """
    from sklearn.datasets import load_digits

    if opts.val_fraction + TEST_FRACTION >= 1:
        raise CnnlabError(f"digits keeps {TEST_FRACTION:.0%} for test, so val_fraction must be below {1 - TEST_FRACTION:g}.")
    raw = load_digits()
    x = torch.from_numpy(raw.images).float().div(16).unsqueeze(1)  # (1797, 1, 8, 8) in [0, 1]
    x = F.interpolate(x, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    x = x.clamp(0, 1)  # bilinear weights sum to 1, but float rounding can overshoot 1 by an ulp
    y = torch.from_numpy(raw.target).long()
    train, val, test = (Split(x[i], y[i]) for i in stratified_split(y, (opts.val_fraction, TEST_FRACTION), seed=0))
    return Dataset(
        name="digits",
        classes=[str(d) for d in range(10)],
        train=train,
        val=val,
        test=test,
        source="scikit-learn load_digits (UCI)",
        licence="CC BY 4.0 (UCI optical recognition of handwritten digits)",
        meta={
            "homepage": "https://archive.ics.uci.edu/dataset/80",
            "preprocessing": "8x8 values 0..16 divided by 16, bilinear upsampling to 28x28",
            "split": f"train / val {opts.val_fraction:g} / test {TEST_FRACTION:g} of all, stratified, seed 0",
        },
    )
