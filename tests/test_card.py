"""Provenance (`cnnlab verify`) and the model card (`cnnlab card`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

import cnnlab
from cnnlab.run import Run
from conftest import fresh_copy

MITCHELL = ["Model details", "Intended use", "Factors", "Metrics", "Evaluation data", "Training data",
            "Quantitative analyses", "Ethical considerations", "Caveats and recommendations"]


@pytest.fixture
def run_copy(trained_run: Run, tmp_path: Path) -> Path:
    fresh_copy(trained_run, tmp_path / "run")
    return tmp_path / "run"


def test_verify_passes_then_catches_tampered_weights(cli, run_copy: Path) -> None:
    r = cli("verify", run_copy)
    assert r.code == 0, r.err
    assert "verified" in r.out and "CC BY 4.0" in r.out  # the dataset's licence is part of provenance
    weights = run_copy / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0x01  # one bit of one parameter
    weights.write_bytes(bytes(raw))
    r = cli("verify", run_copy, "--json")
    assert r.code == 1 and "weights model.safetensors differ(s) from provenance.json" in r.err
    assert '"ok": false' in r.out


def test_verify_catches_changed_data(cli, tmp_path: Path) -> None:
    folder = tmp_path / "shapes"
    for k, colour in enumerate((0, 255)):
        (folder / f"class{k}").mkdir(parents=True)
        for i in range(6):
            Image.new("L", (28, 28), colour if i % 3 else 128).save(folder / f"class{k}" / f"{i}.png")
    run = cnnlab.train(model="logistic", data=f"imagefolder:{folder}", epochs=1, batch_size=4, val_fraction=0.0,
                       out=tmp_path / "run", quiet=True)
    assert cli("verify", run.path).code == 0
    Image.new("L", (28, 28), 7).save(folder / "class0" / "1.png")
    r = cli("verify", run.path)
    assert r.code == 1 and "data imagefolder" in r.err and "DIFFERS" in r.out


def test_card_has_mitchell_sections_and_says_what_was_not_measured(cli, run_copy: Path) -> None:
    r = cli("card", run_copy, "--json")
    assert r.code == 0, r.err
    md = (run_copy / "MODEL_CARD.md").read_text()
    html = (run_copy / "MODEL_CARD.html").read_text()
    assert [line[3:] for line in md.splitlines() if line.startswith("## ")] == MITCHELL
    assert all(f"<h2>{s}</h2>" in html for s in MITCHELL)
    test_acc = Run.load(run_copy).test_result()["test_acc"]
    assert f"{100 * test_acc:.1f}%" in md
    for command in ("cnnlab audit bias", "cnnlab audit privacy", "cnnlab attack", "cnnlab evaluate"):
        assert command in md  # each unmeasured analysis is named, with the command to measure it
    assert "Not measured" in md and "CC BY 4.0" in md


def test_card_reports_the_audits_once_measured(cli, run_copy: Path) -> None:
    assert cli("audit", "bias", run_copy, "--groups", "brightness").code == 0
    assert cli("audit", "privacy", run_copy, "--n", "100").code == 0
    assert cli("card", run_copy).code == 0
    md = (run_copy / "MODEL_CARD.md").read_text()
    assert "worst-group accuracy" in md and "dark third" in md
    assert "Membership inference" in md and "TPR at 1% FPR" in md
    assert "cnnlab audit bias" not in md and "cnnlab audit privacy" not in md


def test_report_has_an_audit_section_once_something_is_audited(cli, run_copy: Path) -> None:
    assert cli("report", run_copy).code == 0
    assert "Audit: groups, privacy" not in (run_copy / "report.html").read_text()
    assert cli("audit", "bias", run_copy, "--groups", "class").code == 0
    assert cli("report", run_copy).code == 0
    html = (run_copy / "report.html").read_text()
    assert "<h2>Audit: groups, privacy, energy and size</h2>" in html and "worst-group accuracy" in html
