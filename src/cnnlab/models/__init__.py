"""Models by name (`build_model`), each taking pixels in [0, 1]. See `registry.py`."""

from cnnlab.models.normalize import Normalize
from cnnlab.models.registry import (
    ModelSpec,
    build_model,
    count_parameters,
    model_entries,
    model_names,
    register_model,
)

__all__ = [
    "ModelSpec",
    "Normalize",
    "build_model",
    "count_parameters",
    "model_entries",
    "model_names",
    "register_model",
]
