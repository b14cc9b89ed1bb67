"""Where a run came from: the data it saw (hashed), the seed, the code and library versions.

Written when a run starts and completed when it ends; `cnnlab verify` (and a resume) re-hash
the data and compare, so a run can show it is what it claims to be.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cnnlab.data import Dataset


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def versions() -> dict[str, str]:
    import numpy
    import torch

    import cnnlab

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        # its installed version, read without importing it: `import torchvision` costs ~1.2 s
        # (it loads torch._dynamo) and nothing else in a training needs it
        "torchvision": importlib.metadata.version("torchvision"),
        "numpy": numpy.__version__,
        "cnnlab": cnnlab.__version__,
    }


def machine() -> dict[str, Any]:
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def git_commit() -> dict[str, Any] | None:
    """The commit of the cnnlab source tree, when it is a git checkout (an editable install)."""
    src = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(src), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "."))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def data_record(data: Dataset) -> dict[str, Any]:
    """What the model was trained on, enough to rebuild its input and to re-check the data."""
    mean, std = data.stats()
    return {
        "name": data.name,
        "tasks": list(data.tasks),
        "source": data.source,
        "licence": data.licence,
        "classes": data.classes,
        "input_shape": list(data.input_shape),
        "mean": mean,
        "std": std,
        "sizes": {name: len(split) for name, split in data.splits().items()},
        "sha256": data.sha256(),
        **({"meta": data.meta} if data.meta else {}),
    }


def start_record(data: Dataset, seed: int) -> dict[str, Any]:
    return {
        "data": data_record(data),
        "seed": seed,
        "versions": versions(),
        "machine": machine(),
        "git": git_commit(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "started": now(),
        "finished": None,
    }
