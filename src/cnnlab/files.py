"""Files a kill cannot break, and weights that cannot carry code.

Every file cnnlab writes goes through `atomic_write`: write beside, flush to disk, rename
over. `os.replace` is atomic on POSIX, so a reader (or a resumed run) sees the old complete
file or the new complete file, never half of one, whatever instant a SIGKILL lands.
Weights are safetensors: tensors and a JSON header, nothing to unpickle.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
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
    """Call `write(tmp)` on a temporary file in the same folder, then rename it to `path`.

    Only a regular file (or nothing) is replaced: a rename over /dev/full, a FIFO or a symlink
    would put a plain file where the user had something else. A failure names `path`, the file
    the user asked for, not the hidden temporary one."""
    path = Path(path)
    refuse_non_regular(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if e.filename is not None and str(e.filename) not in (str(tmp), str(path)):
            raise  # about another file `write` reads
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself survive a power cut
    finally:
        os.close(dir_fd)


def refuse_non_regular(path: Path) -> None:
    """One sentence when `path` exists and is not a regular file (a link, device, FIFO, folder)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return  # nothing there (or not reachable): the write itself says what is wrong
    kinds = [(stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
             (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")]
    kind = next((name for test, name in kinds if test(mode)), None)
    if kind is not None:
        raise CnnlabError(f"{path} is {kind}, not a regular file; cnnlab replaces only regular files, so give another path.")


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def finite(value: Any) -> Any:
    """`value` with every NaN or infinite float inside it (dicts, lists, tuples) replaced by
    None: JSON has no such numbers, and a strict parser refuses a whole document holding one."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def json_text(doc: Any) -> str:
    """`doc` as indented JSON text ending in a newline, NaN and infinities as null (`finite`)."""
    return json.dumps(finite(doc), indent=2, allow_nan=False) + "\n"


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


def weights_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in a safetensors file, from its header alone (no tensor is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise CnnlabError(f"{path} is not a readable safetensors file ({e}).") from None


def check_fit(own: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]], origin: str) -> None:
    """One sentence naming what does not fit when `shapes` are not those of the state `own`."""
    missing = sorted(set(own) - set(shapes))
    unexpected = sorted(set(shapes) - set(own))
    wrong = [k for k in own if k in shapes and tuple(own[k].shape) != tuple(shapes[k])]
    if missing or unexpected or wrong:
        detail = (
            f"missing {missing[:3]}" if missing
            else f"unexpected {unexpected[:3]}" if unexpected
            else f"{wrong[0]} is {tuple(shapes[wrong[0]])}, the model wants {tuple(own[wrong[0]].shape)}"
        )
        raise CnnlabError(f"the weights in {origin} do not fit this model: {detail}.")


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    """Load `state` into `model`, naming what does not fit instead of a wall of keys."""
    check_state(model.state_dict(), state, origin)
    model.load_state_dict(state)


def check_state(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], origin: str) -> None:
    """`state` fits the state `own`: the same names and shapes, and the same types, all finite.
    Tensors of another type (a file cast to int64) or holding NaN or inf are refused: a model
    would load them and answer with nonsense."""
    check_fit(own, {k: tuple(v.shape) for k, v in state.items()}, origin)
    retyped = next((k for k in own if state[k].dtype != own[k].dtype), None)
    if retyped is not None:
        raise CnnlabError(
            f"the weights in {origin} are not the model's: {retyped} holds {state[retyped].dtype}, "
            f"the model {own[retyped].dtype}."
        )
    broken = next((k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if broken is not None:
        raise CnnlabError(f"the weights in {origin} hold NaN or infinite values ({broken}); restore the file or train again.")
