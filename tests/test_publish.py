"""report.html and the model card (`cnnlab.publish`), assembled from what the analyses saved."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cnnlab.attack.runs import attack_run
from cnnlab.publish import SECTIONS, evaluate_run, write_card, write_report
from cnnlab.run import Run
from conftest import fresh_copy

OWN = ["Overview", "Training"]
MODEL = ["Model summary", "Chosen hyperparameters (config.toml)", "Provenance"]


@pytest.fixture
def run(trained_run: Run, tmp_path: Path) -> Run:
    """A private copy of the session's run as training left it (other test files may have saved
    analyses into the shared run): what this file saves in it stays here."""
    return Run.load(fresh_copy(trained_run, tmp_path / "lenet5-digits"))


def headings(html: str) -> list[str]:
    return re.findall(r"<h2>(.*?)</h2>", html)


def test_a_run_without_results_has_only_its_own_sections(run: Run) -> None:
    path = write_report(run)
    assert path == run.path / "report.html"
    html = path.read_text()
    assert headings(html) == OWN + MODEL
    assert html.startswith("<!doctype html>") and f"<title>cnnlab report: {run.name}</title>" in html
    assert len(SECTIONS) == len(set(SECTIONS)) == 11  # the run's 3, the 5 analyses' (generation among them), the model's 3


def test_saved_results_add_their_sections_in_the_listed_order(run: Run) -> None:
    attack_run(run, "fgsm", [0.1], n=20, examples=2)
    evaluate_run(run)
    html = write_report(run).read_text()
    assert headings(html) == OWN + ["Evaluation on the test split", "Robustness"] + MODEL
    record = run.results("attack/fgsm-linf/robustness")
    clean, attacked = record["points"]
    assert "<h3>fgsm (linf) on 20 test images of digits</h3>" in html
    assert f"<td>0.1</td><td>{attacked['accuracy']:.4f}</td>" in html
    assert f"<td>0 (clean)</td><td>{clean['accuracy']:.4f}</td>" in html
    assert html.count('alt="accuracy against eps"') == 1


def test_the_report_shows_a_result_saved_by_hand_through_the_run(run: Run) -> None:
    """The section reads the record back through the Run: a record saved in its place is shown."""
    run.save_result("attack/pgd-l2/robustness", {
        "attack": "pgd", "norm": "l2", "steps": 7, "data": "digits", "split": "val", "n": 3,
        "points": [{"eps": 0.0, "accuracy": 1.0}, {"eps": 0.5, "accuracy": 0.3333}],
        "files": {"curve": str(run.path / "missing.png"), "examples": str(run.path / "missing.png")},
    })
    html = write_report(run).read_text()
    assert "<h3>pgd-7 (l2) on 3 val images of digits</h3>" in html and "<td>0.3333</td>" in html
    assert "data:image/png" not in html.split("<h2>Robustness</h2>")[1].split("<h2>")[0]  # no picture, none shown


def test_the_card_reads_each_analysis_through_its_reader(run: Run) -> None:
    write_card(run)
    before = (run.path / "MODEL_CARD.md").read_text()
    assert "Robustness: **Not measured.** Run `cnnlab attack" in before
    run.save_result("attack/pgd-linf/robustness", {
        "attack": "pgd", "norm": "linf", "steps": 20, "data": "digits", "split": "test", "n": 8,
        "points": [{"eps": 0.0, "accuracy": 0.875}, {"eps": 0.1, "accuracy": 0.125}], "files": {},
    })
    run.save_result("audit/bias", {
        "groups": "brightness", "split": "test", "n": 8, "min_group_size": 4, "average_accuracy": 0.75,
        "worst_group": "dark third", "worst_group_accuracy": 0.5, "largest_gap": 0.5,
        "by_group": [{"group": "dark third", "accuracy": 0.5, "count": 4}, {"group": "bright", "accuracy": 1.0, "count": 4}],
    })
    files = write_card(run)
    md, html = files["markdown"].read_text(), files["html"].read_text()
    assert "**Robustness** (pgd, linf, 8 test images): eps 0: 87.5%, eps 0.1: 12.5%." in md
    assert "worst-group accuracy **50.0%** (dark third)" in md and "| dark third | 50.0% | 4 |" in md
    assert "worst-group accuracy <b>50.0%</b> (dark third)" in html  # the same blocks, as HTML
    assert "cnnlab attack" not in md and "cnnlab audit bias" not in md
    assert "a 50.0% accuracy gap between groups" in md  # the ethical considerations read it too
