"""Files a kill cannot break, and weights that cannot carry code.

Every file cnnlab writes goes through `atomic_write`: write beside, flush to disk, rename
over. `os.replace` is atomic on POSIX, so a reader (or a resumed run) sees the old complete
file or the new complete file, never half of one, whatever instant a SIGKILL lands.
Weights are safetensors: tensors and a JSON header, nothing to unpickle.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError


def slug(name: str) -> str:
    """A name as a file name: 'imagefolder:/data/my pets/' -> 'imagefolder-data-my-pets'."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", name).strip("-")[-48:]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a temporary file in the same folder, then rename it to `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself survive a power cut
    finally:
        os.close(dir_fd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def save_weights(model: nn.Module, path: Path, metadata: dict[str, Any]) -> None:
    """Learned parameters and buffers as safetensors; `metadata` (JSON-encoded) makes the
    file self-describing: which model, which input shape, which classes.

    Equal tensors and metadata give a byte-identical file, so a file's hash names the weights.
    safetensors lays the tensors out in a fixed order (by dtype alignment, then name) but writes
    its JSON header's keys in the random order of a Rust HashMap; the header is re-encoded here
    with sorted keys, the tensor bytes after it untouched."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = save(state, metadata={k: json.dumps(v, sort_keys=True) for k, v in metadata.items()})
    n = int.from_bytes(blob[:8], "little")  # the format: header length (u64 LE), JSON header, tensor bytes
    header = json.dumps(json.loads(blob[8 : 8 + n]), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    header += b" " * (-len(header) % 8)  # the tensor bytes start 8-byte aligned, padded as safetensors pads
    atomic_write(path, lambda tmp: tmp.write_bytes(len(header).to_bytes(8, "little") + header + blob[8 + n :]))


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of a safetensors file, with a clear error if it is not one."""
    from safetensors import safe_open

    if not Path(path).is_file():
        raise CnnlabError(f"weights file {path} does not exist.")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise CnnlabError(f"{path} is not a readable safetensors file ({e}).") from None
    return state, meta


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    """Load `state` into `model`, naming what does not fit instead of a wall of keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        detail = (
            f"missing {missing[:3]}" if missing
            else f"unexpected {unexpected[:3]}" if unexpected
            else f"{wrong[0]} is {tuple(state[wrong[0]].shape)}, the model wants {tuple(own[wrong[0]].shape)}"
        )
        raise CnnlabError(f"the weights in {origin} do not fit this model: {detail}.")
    model.load_state_dict(state)
