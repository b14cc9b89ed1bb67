"""A CNN Tree as one plain nn.Module: a root network picks a group of classes, a leaf network
per group picks the class within it.

After the confusion-set trees of the lecture's classification slide (Yan et al. 2015, HD-CNN:
Hierarchical Deep Convolutional Neural Networks for Large Scale Visual Recognition, eq. 1):
P(class) = P(group of class) * P(class | group). A group of one class has no leaf (its
conditional probability is 1). The output is log P(class): a classifier's cross-entropy,
softmax and argmax read it as logits (softmax(log p) = p, as the probabilities sum to 1), so
every analysis takes the tree as it takes any classifier.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TreeNet(nn.Module):
    """root: (N, C, H, W) -> (N, G) group logits; leaves[j]: -> (N, |group|) logits, one per group
    of at least 2 classes in the order of `groups`; groups: class indices of each group, a
    partition of 0..K-1. x: pixels (N, C, H, W) in [0, 1] -> log-probabilities (N, K)."""

    def __init__(self, root: nn.Module, leaves: list[nn.Module], groups: list[list[int]]) -> None:
        super().__init__()
        self.root = root
        self.leaves = nn.ModuleList(leaves)
        self.groups = [list(g) for g in groups]
        self.num_classes = sum(len(g) for g in groups)

    def forward(self, x: Tensor) -> Tensor:
        log_group = self.root(x).log_softmax(1)  # (N, G)
        out = x.new_empty(len(x), self.num_classes)
        leaves = iter(self.leaves)
        for g, classes in enumerate(self.groups):
            within = next(leaves)(x).log_softmax(1) if len(classes) > 1 else x.new_zeros(len(x), 1)
            out[:, classes] = log_group[:, g : g + 1] + within  # log P(group) + log P(class | group)
        return out


def groups_problem(groups: object, num_classes: int) -> str | None:
    """What is wrong with a tree's groups (a partition of 0..num_classes-1 into >= 2 groups), or None."""
    if not (isinstance(groups, list) and len(groups) >= 2
            and all(isinstance(g, list) and g and all(isinstance(c, int) and not isinstance(c, bool) for c in g)
                    for g in groups)):
        return "derived.groups is not a list of at least 2 non-empty lists of class indices"
    if sorted(c for g in groups for c in g) != list(range(num_classes)):
        return f"derived.groups does not hold each of the {num_classes} class indices exactly once"
    return None


def leaf_count(groups: list[list[int]]) -> int:
    return sum(len(g) > 1 for g in groups)


def class_to_group(groups: list[list[int]]) -> Tensor:
    """(K,) the group index of each class."""
    table = torch.empty(sum(len(g) for g in groups), dtype=torch.int64)
    for g, classes in enumerate(groups):
        table[classes] = g
    return table
