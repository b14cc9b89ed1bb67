"""How big and how fast is a model: parameters, FLOPs per image, weights file, latency, throughput.

The lecture's contrast: LeNet-5 (LeCun et al. 1998) has ~60k parameters, ResNets (He et al.
2016) hundreds of thousands to millions. FLOPs come from `cnnlab.summary` (torch's flop counter,
a multiply-add counts 2). Latency is the median of repeated single-image forward passes;
throughput is images per second in batches of 256. Both depend on the machine and its load,
so the record says which threads and device measured them.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.bench import forward_times
from cnnlab.summary import summarize


@dataclass
class Size:
    params: int  # learned parameters
    flops_per_image: int  # forward pass, a multiply-add counts 2
    weights_bytes: int | None  # the weights file, if one was given
    latency_ms_batch1: float  # median of single-image forward passes
    throughput_batch256: float  # images per second in batches of 256
    device: str
    threads: int  # torch's CPU threads when it was measured

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_size(model: nn.Module, input_shape: tuple[int, int, int], weights_file: Path | None = None,
                 latency_repeats: int = 50, throughput_repeats: int = 3) -> Size:
    """Size and speed of `model` on inputs (C, H, W)."""
    s = summarize(model, input_shape)
    one = forward_times(model, input_shape, 1, latency_repeats)
    many = forward_times(model, input_shape, 256, throughput_repeats)
    return Size(
        params=s.params,
        flops_per_image=s.flops,
        weights_bytes=weights_file.stat().st_size if weights_file and weights_file.is_file() else None,
        latency_ms_batch1=1000 * statistics.median(one),
        throughput_batch256=256 / statistics.median(many),
        device=str(next(model.parameters()).device),
        threads=torch.get_num_threads(),
    )
