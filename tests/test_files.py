"""Weights files: a fixed byte layout, so equal weights are equal files and a hash names them."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

import cnnlab
from cnnlab.files import read_weights, save_weights
from cnnlab.run import WEIGHTS


def header(path: Path) -> tuple[bytes, dict]:
    """The raw JSON header of a safetensors file and its parsed keys, in file order."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return raw[8 : 8 + n], json.loads(raw[8 : 8 + n])


def test_the_header_is_written_in_a_fixed_order(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 3).double())
    metadata = {"model": "m", "classes": ["b", "a"], "input_shape": [1, 8, 8], "extra": {"z": 1, "a": 2}}
    files = [tmp_path / f"{i}.safetensors" for i in range(5)]
    for f in files:
        save_weights(model, f, metadata)

    raw, parsed = header(files[0])
    assert list(parsed) == sorted(parsed)  # tensors and __metadata__
    assert list(parsed["__metadata__"]) == sorted(metadata)
    assert parsed["__metadata__"]["extra"] == '{"a": 2, "z": 1}'  # values sorted too
    assert (8 + len(raw)) % 8 == 0  # the tensor bytes stay 8-byte aligned
    assert len({f.read_bytes() for f in files}) == 1  # safetensors alone orders its header at random

    state, meta = read_weights(files[0])
    assert meta == metadata
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_two_trainings_with_the_same_seed_write_identical_weights(tmp_path: Path) -> None:
    runs = [
        cnnlab.train(model="lenet5", data="digits", epochs=1, batch_size=64, seed=3, out=tmp_path / f"run{i}", quiet=True)
        for i in range(2)
    ]
    first, second = ((run.path / WEIGHTS).read_bytes() for run in runs)
    assert first == second
    assert runs[0].metrics()[-1]["test_acc"] == runs[1].metrics()[-1]["test_acc"]
