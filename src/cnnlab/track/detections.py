"""Where a tracker's detections come from: a detection run on each frame, a det.txt file, or
the ground truth made noisy, so that tracking can be measured apart from detecting.

All give `Boxes` (data/mot.py) with id -1: frame, -1, x1, y1, w, h, score, 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cnnlab.data.mot import FRAME, SCORE, VISIBILITY, X1, Boxes, Sequence, empty_boxes
from cnnlab.errors import CnnlabError

# The default noise: each box's sides move by 5% of its size (a good detector's jitter), one
# object in ten is missed, and one false box appears every five frames on average.
NOISE = (0.05, 0.1, 0.2)
SEEN = 0.5  # a detector is not asked to find an object less than half in view: it is missed
SCORE_THRESHOLD = 0.5  # of a detection run's boxes, those scored lower are not given to the tracker
BATCH = 64  # frames through the detector at once


def parse_noise(text: str) -> tuple[float, float, float]:
    """'0.05,0.1,0.2' -> (jitter, miss rate, false positives per frame), each named when wrong."""
    try:
        jitter, miss, false = (float(v) for v in text.split(","))
    except ValueError:
        raise CnnlabError(f"--noise must be three numbers JITTER,MISS,FALSE (e.g. 0.05,0.1,0.2), got '{text}'.") from None
    if not (0 <= jitter <= 1 and 0 <= miss <= 1 and 0 <= false <= 100):
        raise CnnlabError(f"--noise {text}: jitter and miss rate must lie in [0, 1], false positives per frame in [0, 100].")
    return jitter, miss, false


def noisy_detections(gt: Boxes, size: tuple[int, int], noise: tuple[float, float, float] = NOISE,
                     seed: int | list[int] = 0) -> Boxes:
    """Detections made from the true boxes: each considered box at least SEEN in view is kept
    unless missed (probability noise[1]), its four sides moved by Gaussian noise of std
    noise[0] times its width or height; and false boxes, Poisson(noise[2]) per frame, of the
    true boxes' sizes at random places. Scores: true boxes 0.5-1, false ones 0.3-0.8."""
    jitter, miss, false = noise
    rng = np.random.default_rng(seed)
    height, width = size
    kept = gt[(gt[:, SCORE] != 0) & (gt[:, VISIBILITY] >= SEEN)]
    kept = kept[rng.random(len(kept)) >= miss]
    w, h = kept[:, X1 + 2], kept[:, X1 + 3]
    sides = np.stack([kept[:, X1], kept[:, X1 + 1], kept[:, X1] + w, kept[:, X1 + 1] + h], 1)
    sides += jitter * rng.standard_normal(sides.shape) * np.stack([w, h, w, h], 1)
    sides[:, 2:] = np.maximum(sides[:, 2:], sides[:, :2] + 1)  # a box keeps a width and height of a pixel at least
    true = np.column_stack([kept[:, FRAME], -np.ones(len(kept)), sides[:, :2], sides[:, 2:] - sides[:, :2],
                            rng.uniform(0.5, 1.0, len(kept)), np.ones(len(kept))])
    frames = np.unique(gt[:, FRAME])
    counts = rng.poisson(false, len(frames))
    n = int(counts.sum())
    if n and len(gt):
        pick = gt[rng.integers(0, len(gt), n), X1 + 2:X1 + 4]  # sizes of true boxes
        corner = rng.random((n, 2)) * np.maximum(np.array([width, height]) - pick, 1)
        fakes = np.column_stack([np.repeat(frames, counts), -np.ones(n), corner, pick, rng.uniform(0.3, 0.8, n), np.ones(n)])
        true = np.concatenate([true, fakes])
    return true[np.argsort(true[:, FRAME], kind="stable")]


def detect(run_dir: str | Path, sequence: Sequence, score_threshold: float = SCORE_THRESHOLD) -> Boxes:
    """The boxes a detection run (yolo, ssd) finds on each frame, scored `score_threshold` or
    more, in the frame's own pixels (frames are resized to the run's input and the boxes back)."""
    from torch.nn.functional import interpolate

    from cnnlab.run import Run

    run = Run.load(run_dir)
    if run.task.name != "detect":
        raise CnnlabError(f"--detector needs a detection run (yolo or ssd); {run.name} learned the {run.task.name} task.")
    task = run.task
    c, h, w = run.input_shape
    height, width = sequence.size
    scale = torch.tensor([width / w, height / h, width / w, height / h])
    rows = []
    for start in range(1, sequence.length + 1, BATCH):
        frames = range(start, min(start + BATCH, sequence.length + 1))
        x = interpolate(torch.stack([sequence.frame(t) for t in frames]), size=(h, w), mode="bilinear", antialias=True)
        x = x.mean(1, keepdim=True) if c == 1 else x
        for t, found in zip(frames, task.decode(task.outputs(run.model, x), score_threshold=score_threshold)):
            box = (found["boxes"] * scale).double().numpy()
            for (x1, y1, x2, y2), score in zip(box.tolist(), found["scores"].tolist()):
                if x2 - x1 >= 1 and y2 - y1 >= 1:  # a box under a pixel wide has no aspect ratio to track
                    rows.append([t, -1, x1, y1, x2 - x1, y2 - y1, score, 1])
    return np.array(rows, dtype=np.float64).reshape(-1, 8) if rows else empty_boxes()
