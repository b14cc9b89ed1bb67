"""`eval_mode(model)`: a model in eval mode for a block, its previous mode restored after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Dropout off and BatchNorm on its running statistics inside the block; whatever mode the
    model was in (training, say) comes back afterwards, also when the block raises."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
