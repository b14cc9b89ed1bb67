"""CNN Tree: groups from a confusion matrix, P(class) = P(group) P(class | group), a real tree run on digits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.compress.tree import find_groups, groups_from_file
from cnnlab.errors import CnnlabError
from cnnlab.models.tree import TreeNet

# Six classes: 0, 1, 2 mistake each other; 3 and 4 mistake each other; 5 is hardly ever wrong
# and its two mistakes say 0 and 3. Row = true class.
CONFUSION = torch.tensor([
    [80, 10, 8, 1, 1, 0],
    [12, 78, 9, 0, 1, 0],
    [7, 11, 80, 1, 0, 1],
    [1, 0, 1, 90, 8, 0],
    [0, 1, 0, 9, 90, 0],
    [1, 0, 0, 1, 0, 98],
])


def test_groups_from_a_hand_made_confusion():
    assert find_groups(CONFUSION) == [[0, 1, 2], [3, 4], [5]]
    assert find_groups(CONFUSION, 2) == [[0, 1, 2], [3, 4, 5]]  # 5 shares more with {3, 4} (1 of 2 each) than with {0, 1, 2}
    with pytest.raises(CnnlabError, match="from 2 to 5"):
        find_groups(CONFUSION, 6)
    with pytest.raises(CnnlabError, match="no two classes share"):
        find_groups(torch.eye(4, dtype=torch.int64) * 50)


def test_groups_from_a_file(tmp_path):
    classes = ["cat", "dog", "car", "bus"]
    file = tmp_path / "groups.json"
    file.write_text(json.dumps([["dog", "cat"]]))
    assert groups_from_file(file, classes) == [[0, 1], [2], [3]]
    file.write_text(json.dumps([["dog", "cow"]]))
    with pytest.raises(CnnlabError, match="unknown classes"):
        groups_from_file(file, classes)


def test_tree_probabilities_sum_to_one_and_multiply():
    torch.manual_seed(0)

    def net(k: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(12, k))

    groups = [[0, 3], [1], [2, 4, 5]]
    tree = TreeNet(net(3), [net(2), net(3)], groups)
    x = torch.rand(7, 1, 3, 4)
    p = tree(x).exp()
    assert torch.allclose(p.sum(1), torch.ones(7), atol=1e-6)
    p_group = tree.root(x).softmax(1)
    assert torch.allclose(p[:, 1], p_group[:, 1])  # a class alone in its group: P(class) = P(group)
    assert torch.allclose(p[:, 3], p_group[:, 0] * tree.leaves[0](x).softmax(1)[:, 1])


@pytest.mark.slow  # three trainings and a second Python process
def test_tree_run_end_to_end(trained_run, tmp_path, cli):
    from cnnlab.run import Run

    file = tmp_path / "groups.json"
    file.write_text(json.dumps([["3", "5", "8", "9"], ["1", "7"]]))
    result = cli("tree", trained_run.path, "--out", tmp_path / "tree", "--groups", file, "--epochs", "2", "--quiet", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["groups"] == [["0"], ["1", "7"], ["2"], ["3", "5", "8", "9"], ["4"], ["6"]]
    assert len(list((tmp_path / "tree" / "parts").iterdir())) == 3  # the root and 2 leaves
    assert report["tree_size"]["params"] == 3 * report["flat_size"]["params"] - 3 * (84 * 10 + 10) + 84 * (6 + 2 + 4) + 12
    assert Path(report["figures"]["dendrogram"]).stat().st_size > 5000
    assert 0 <= report["root_accuracy"] <= 1 and report["flat_accuracy"] == pytest.approx(trained_run.test_result()["test_acc"])
    # a fresh process opens the tree as any run and scores it as the report did
    exe = Path(sys.executable).with_name("cnnlab")
    done = subprocess.run([str(exe), "evaluate", str(tmp_path / "tree"), "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["accuracy"] == pytest.approx(report["tree_accuracy"])
    tree = Run.load(tmp_path / "tree")
    assert tree.provenance["derived"]["parent"] == str(trained_run.path)
    probs = tree.predict(trained_run.load_data().test.x[:5])
    assert torch.allclose(probs.sum(1), torch.ones(5), atol=1e-5)
