"""Runs by name: the run the server was started on, and its siblings in the same folder.

`cnnlab serve runs/lenet` answers for `lenet` by default and for `runs/other` when a request
says `?run=other`, so the lab page works on any run a user trained. A name is a folder name,
never a path: `../` or `/etc` is an unknown run, not a file to open.
"""

from __future__ import annotations

import threading
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.run import CONFIG, Run


class UnknownRun(CnnlabError):
    """A request named a run that is not there (answered 404)."""


class RunStore:
    """Opens runs on first use and keeps them; one lock per run, since Grad-CAM and attacks
    put hooks and gradients on the shared model and two requests must not interleave."""

    def __init__(self, run_dir: str | Path) -> None:
        path = Path(run_dir)
        self.default = Run.load(path)  # a bad run stops `cnnlab serve` at once, with its sentence
        self.root = path.resolve().parent
        self._runs: dict[str, Run] = {self.default.name: self.default}
        self._locks: dict[str, threading.Lock] = {self.default.name: threading.Lock()}
        self._guard = threading.Lock()

    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if (p / CONFIG).is_file() and (p / "model.safetensors").is_file())

    def get(self, name: str | None) -> tuple[Run, threading.Lock]:
        name = name or self.default.name
        with self._guard:
            if name not in self._runs:
                if "/" in name or "\\" in name or name.startswith(".") or name not in self.names():
                    raise UnknownRun(f"unknown run '{name}'; runs here: {', '.join(self.names()) or 'none'}.")
                self._runs[name] = Run.load(self.root / name)
                self._locks[name] = threading.Lock()
            return self._runs[name], self._locks[name]
