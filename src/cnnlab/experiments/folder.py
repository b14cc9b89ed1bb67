"""The one overwrite rule of every experiment.

An experiment owns its `out` folder: its record (`experiment.json`, naming the experiment)
and the runs it trained beside it. A folder that already holds an experiment is replaced only
when `overwrite` is given; a folder holding anything else is never deleted. The label-noise
experiment trains a single run, so its `out` is that run, under the same rule as
`cnnlab train --out` (Run.create).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write_text

RECORD = "experiment.json"


def claim(out: str | Path, experiment: str, overwrite: bool) -> Path:
    """The empty folder `out` for `experiment`, after the rule above; created if missing."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not (out / RECORD).is_file():
            raise CnnlabError(f"{out} holds files that are not a cnnlab experiment; choose another --out.")
        if not overwrite:
            raise CnnlabError(f"{out} already holds an experiment; choose another --out or add --overwrite to replace it.")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def save(out: Path, experiment: str, record: dict[str, Any]) -> Path:
    """OUT/experiment.json: the experiment's name and what it measured (written atomically)."""
    atomic_write_text(out / RECORD, json.dumps({"experiment": experiment, **record}, indent=2) + "\n")
    return out / RECORD
