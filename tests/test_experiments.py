"""The one overwrite rule every experiment follows (cnnlab.experiments.folder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.experiments import folder


def test_an_experiment_folder_is_replaced_only_with_overwrite(tmp_path: Path) -> None:
    out = folder.claim(tmp_path / "exp", "backdoor", overwrite=False)
    folder.save(out, "backdoor", {"rows": [1]})
    (out / "rate-0").mkdir()
    assert json.loads((out / "experiment.json").read_text()) == {"experiment": "backdoor", "rows": [1]}
    with pytest.raises(CnnlabError, match="already holds an experiment; choose another --out or add --overwrite"):
        folder.claim(out, "backdoor", overwrite=False)
    assert (out / "rate-0").is_dir()  # refused: nothing deleted
    folder.claim(out, "backdoor", overwrite=True)
    assert out.is_dir() and not any(out.iterdir())


def test_a_folder_that_is_not_an_experiment_is_never_deleted(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    for overwrite in (False, True):
        with pytest.raises(CnnlabError, match="not a cnnlab experiment"):
            folder.claim(tmp_path / "mine", "mlp-vs-cnn", overwrite=overwrite)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "years of work"
    assert folder.claim(tmp_path / "empty-or-new", "mlp-vs-cnn", overwrite=False).is_dir()
