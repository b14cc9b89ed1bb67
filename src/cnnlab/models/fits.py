"""`check_model_fits`: does a model take a dataset's images and give one logit per class?"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models.modes import eval_mode


def check_model_fits(model: nn.Module, input_shape: Sequence[int], num_classes: int | None = None,
                     data: str = "") -> None:
    """One forward pass of two black images of `input_shape` (C, H, W), in eval mode, on the
    model's device; a model that cannot take them, or (given `num_classes`) does not output
    (N, num_classes) logits, is one sentence naming the `data` (e.g. "digits") instead of a
    traceback from deep inside the model."""
    shape = "x".join(map(str, input_shape))
    images = f"{data} images" if data else "images"
    param = next(model.parameters(), None)
    x = torch.zeros(2, *input_shape, device=param.device if param is not None else "cpu")
    try:
        with torch.no_grad(), eval_mode(model):
            out = model(x)
    except RuntimeError as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__  # torch's first line names the mismatch
        raise CnnlabError(f"the model cannot take {images} of shape {shape}: {why}") from None
    if num_classes is not None and (out.ndim != 2 or out.shape[1] != num_classes):
        raise CnnlabError(
            f"the model outputs shape {tuple(out.shape)} but {data or 'the data'} needs (N, {num_classes}) logits."
        )
