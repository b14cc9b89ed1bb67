"""Appearance features of detections: what a classifier run's penultimate layer makes of each box.

DeepSORT (Wojke, Bewley & Paulus 2017, section 2.4) describes each detection by the output of
a CNN trained to tell identities apart, cropped to the box and scaled to the network's input,
normalised to unit length so that 1 - a.b is a cosine distance. Here any cnnlab classifier run
serves: its feature of a crop is the input of its last linear layer (the penultimate features,
the layer a classifier's final decision is a linear function of). A run trained on
`moving-crops` (one class per object identity) has learned features meant for this.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from cnnlab.errors import CnnlabError
from cnnlab.models import eval_mode
from cnnlab.models.hooks import recording


class Embedder:
    """`Embedder(run_dir)(frame, boxes)` -> (K, D) unit-length features of the boxes' crops."""

    def __init__(self, run_dir: str | Path) -> None:
        from cnnlab.run import Run

        run = Run.load(run_dir)
        run.require_classifier("--appearance")
        self.model, self.name = run.model, run.name
        self.channels, self.height, self.width = run.input_shape
        linear = [(name, m) for name, m in self.model.named_modules() if isinstance(m, nn.Linear)]
        if not linear:
            raise CnnlabError(f"run {run.name}'s model has no linear layer whose input could serve as appearance features.")
        self.layer = linear[-1]

    def __call__(self, frame: Tensor, boxes: np.ndarray) -> np.ndarray:
        """frame (3, H, W) in [0, 1], boxes (K, 4) x1, y1, w, h in its pixels -> (K, D) float64."""
        from torchvision.ops import roi_align

        if len(boxes) == 0:
            return np.zeros((0, self.layer[1].in_features))
        xyxy = torch.from_numpy(np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:4]], 1)).float()
        # bilinear samples of each box at the run's input size, 2x2 per output pixel as Mask R-CNN's RoIAlign
        crops = roi_align(frame[None], [xyxy], output_size=(self.height, self.width), sampling_ratio=2, aligned=True)
        crops = crops.mean(1, keepdim=True) if self.channels == 1 else crops
        with eval_mode(self.model), torch.no_grad(), recording([self.layer], inputs=True, copy=True) as seen:
            self.model(crops)
        features = seen[self.layer[0]].flatten(1)
        return torch.nn.functional.normalize(features, dim=1).double().numpy()
