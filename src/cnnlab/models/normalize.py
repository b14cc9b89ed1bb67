"""The first layer of every cnnlab model: pixels in [0, 1] -> standardised inputs.

Keeping normalisation inside the model means every tool (attacks, attributions, the server)
feeds raw pixels and measures epsilon in pixel space, the confusion users of attack libraries
report most (inputs normalised differently per tool, eps in the wrong space).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class Normalize(nn.Module):
    """(x - mean) / std per channel. Buffers, not parameters: nothing here is learned."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:  # x: (N, C, H, W) in [0, 1]
        return (x - self.mean) / self.std  # (1, C, 1, 1) also broadcasts over clips (N, T, C, H, W)

    def extra_repr(self) -> str:
        if self.mean.is_meta:  # a model built for its shapes only has no values to show
            return f"mean and std of {self.mean.numel()} channel(s)"
        fmt = lambda t: "(" + ", ".join(f"{v:.4f}" for v in t.flatten().tolist()) + ")"  # noqa: E731
        return f"mean={fmt(self.mean)}, std={fmt(self.std)}"
