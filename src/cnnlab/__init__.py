"""cnnlab: build, train, explain, attack and audit convolutional neural networks.

The Python API mirrors the CLI:

    import cnnlab
    data = cnnlab.load_data("digits")
    run = cnnlab.train(model="lenet5", data="digits", epochs=5)
    run = cnnlab.Run.load(run.path)
    print(run.evaluate().accuracy, run.predict(data.test.x[:4]))

Names are imported on first use, so `import cnnlab` (and `cnnlab --help`) stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "CnnlabError": "cnnlab.errors",
    "load_data": "cnnlab.data",
    "build_model": "cnnlab.models",
    "TrainConfig": "cnnlab.training",
    "train": "cnnlab.training",
    "resume": "cnnlab.training",
    "Run": "cnnlab.run",
    "summarize": "cnnlab.summary",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:
    from cnnlab.data import load_data
    from cnnlab.errors import CnnlabError
    from cnnlab.models import build_model
    from cnnlab.run import Run
    from cnnlab.summary import summarize
    from cnnlab.training import TrainConfig, resume, train


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")
