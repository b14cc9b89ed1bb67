"""The soak of benchmarks/serve_soak.py, shortened: mixed requests and junk from several
clients, every answer the expected one, memory flat, the server still right afterwards."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).parents[1] / "benchmarks" / "serve_soak.py"


@pytest.mark.slow
def test_a_short_soak_gets_only_expected_answers_and_keeps_memory_flat(trained_run) -> None:
    r = subprocess.run([sys.executable, str(SOAK), str(trained_run.path), "--seconds", "30", "--clients", "4"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "unexpected answers: 0" in r.stdout
    assert "afterwards: predict says" in r.stdout and "explain answers 200" in r.stdout
