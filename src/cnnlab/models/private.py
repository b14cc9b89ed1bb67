"""A model Opacus can train with per-sample gradients (DP-SGD), built the same way at training
and when a private run is loaded again."""

from __future__ import annotations

from torch import nn

from cnnlab.errors import CnnlabError


def dp_ready(model: nn.Module) -> nn.Module:
    """The model with every layer Opacus cannot clip per sample (BatchNorm) replaced (GroupNorm)."""
    from opacus.validators import ModuleValidator

    if ModuleValidator.validate(model, strict=False):
        model = ModuleValidator.fix(model)
    for m in model.modules():  # an in-place activation would overwrite what the per-sample hooks saved
        if getattr(m, "inplace", False):
            m.inplace = False
    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise CnnlabError(f"this model cannot be trained with --dp: {errors[0]}.")
    return model
