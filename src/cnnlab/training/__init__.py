"""Training: the config, the fit loop, checkpoints, and `train` / `resume`."""

from cnnlab.config import TrainConfig
from cnnlab.training.api import resume, train
from cnnlab.training.fit import TrainingInterrupted, fit

__all__ = ["TrainConfig", "TrainingInterrupted", "fit", "resume", "train"]
