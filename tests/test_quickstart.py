"""The main job, end to end, exactly as `make demo` runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import cnnlab_process


@pytest.mark.slow
def test_quickstart_reaches_097_and_writes_the_report(tmp_path: Path) -> None:
    p = cnnlab_process("quickstart", "--out", tmp_path / "qs", "--json")
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    doc = json.loads(out)
    assert doc["test_accuracy"] >= 0.97
    html = Path(doc["report"]).read_text()
    assert Path(doc["report"]) == tmp_path / "qs" / "report.html"
    for section in ("Training", "Confusion matrix", "Misclassified", "Model summary"):
        assert section in html
    # a second quickstart replaces the first run instead of refusing
    p = cnnlab_process("quickstart", "--out", tmp_path / "qs", "--json")
    p.communicate(timeout=300)
    assert p.returncode == 0
