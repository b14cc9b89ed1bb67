"""Models by name (`build_model`), each taking pixels in [0, 1] (see `registry.py`), and what
every analysis does to any model: `eval_mode`, its layers (`find_layer`, `first_layer`, ...),
`recording` what they output, `check_model_fits` the data."""

from cnnlab.models.fits import check_model_fits
from cnnlab.models.hooks import Recorded, recording
from cnnlab.models.layers import find_layer, first_layer, last_layer, layers_of
from cnnlab.models.modes import eval_mode
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
    "Recorded",
    "build_model",
    "check_model_fits",
    "count_parameters",
    "eval_mode",
    "find_layer",
    "first_layer",
    "last_layer",
    "layers_of",
    "model_entries",
    "model_names",
    "recording",
    "register_model",
]
