"""Shared fixtures: real data (the embedded digits), a real trained run, the real CLI.

Tests never reach the network: CNNLAB_OFFLINE=1 turns any download into the offline error,
and CNNLAB_DATA points at an empty folder unless a test says otherwise.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

os.environ["CNNLAB_OFFLINE"] = "1"
os.environ.setdefault("CNNLAB_ENERGY", "0")  # CodeCarbon needs ~2-3 s to start; test_energy.py turns it on
torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _no_shared_data(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path_factory.mktemp("cnnlab-data")))
    monkeypatch.delenv("CNNLAB_DEBUG", raising=False)


@pytest.fixture(scope="session")
def digits():
    from cnnlab.data import load_data

    return load_data("digits")


def fresh_copy(run, dest: Path) -> Path:
    """A copy of `run` as its training left it: other tests save analyses into the shared
    session run, and a test that counts sections or result files must not see theirs."""
    from cnnlab.run import BEST, CHECKPOINT, CONFIG, METRICS, PROVENANCE, WEIGHTS

    dest.mkdir(parents=True)
    for name in (CONFIG, PROVENANCE, WEIGHTS, BEST, METRICS, CHECKPOINT, "energy.json"):
        if (run.path / name).is_file():
            shutil.copy2(run.path / name, dest / name)
    return dest


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, digits):
    """LeNet-5 trained on digits for 4 epochs (a few seconds): the run most tests read."""
    import cnnlab

    out = tmp_path_factory.mktemp("runs") / "lenet5-digits"
    return cnnlab.train(model="lenet5", data="digits", epochs=4, batch_size=32, out=out, quiet=True)


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run `cnnlab ARGS...` in this process through the real entry point (`cnnlab.cli.main`)."""
    from cnnlab.cli import main

    def run(*args: str | Path) -> Result:
        monkeypatch.setattr(sys, "argv", ["cnnlab", *map(str, args)])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def cnnlab_process(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start the installed `cnnlab` console script as a separate process (for signals, exit codes)."""
    exe = Path(sys.executable).with_name("cnnlab")
    return subprocess.Popen(
        [str(exe), *map(str, args)], cwd=cwd, env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


# Debian's Chromium, driven by Playwright (never `playwright install`): in CI a missing browser fails.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"), reason="needs Debian's chromium (apt-get install chromium)"
)


@contextmanager
def serving(app) -> Iterator[str]:
    """`app` served by uvicorn on a free port of 127.0.0.1, in a thread of this process: yields
    its URL, and stops it when the block ends."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    web = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not web.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        web.should_exit = True
        thread.join(timeout=30)
    assert not thread.is_alive()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh page of the module's Chromium; a script error in it fails the test."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)  # a loaded CI machine: a PGD or a training can take seconds
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    page.close()
    assert not errors, errors


@pytest.fixture
def shots(tmp_path) -> Path:
    """Where screenshots go: $CNNLAB_SCREENSHOTS when set (docs/screenshots/ holds the committed ones)."""
    folder = Path(os.environ.get("CNNLAB_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
