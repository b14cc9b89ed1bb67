"""The trainer state of a run, for an exact resume.

A plain `torch.save` of tensors, numbers and dicts (optimizer, schedule, RNG states,
position), written atomically and read back with `weights_only=True`: never unpickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write


def save_state(state: dict[str, Any], path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: Path) -> dict[str, Any]:
    """Trainer state written by `save_state`; never unpickles arbitrary objects."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CnnlabError(f"{path} does not exist: this run has no checkpoint to resume from.") from None
    except Exception as e:
        raise CnnlabError(f"checkpoint {path} cannot be read safely ({type(e).__name__}).") from None
