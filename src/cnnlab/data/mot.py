"""Video sequences with boxes, and the MOTChallenge folder layout they are read from and written to.

The layout of the MOTChallenge benchmark (Milan, Leal-Taixé, Reid, Roth & Schindler 2016,
"MOT16: A Benchmark for Multi-Object Tracking", arXiv:1603.00831, section 3.3):

    SEQ/
      seqinfo.ini   [Sequence] name, imDir, frameRate, seqLength, imWidth, imHeight, imExt
      img1/         the frames, 000001.jpg, 000002.jpg, ... (imDir and imExt say which)
      gt/gt.txt     ground truth: frame, id, left, top, width, height, consider, class, visibility
      det/det.txt   detections:   frame, -1, left, top, width, height, score, -1, -1, -1

and a tracker's results.txt has the lines of det.txt with the track's id in the second column.
Frames count from 1 and so do the pixels: MOTChallenge's top-left pixel is (1, 1). Here boxes
are held as every other box in cnnlab, x1, y1 in 0-based pixels, and shifted by one on reading
and writing, so a box read from gt.txt lies on the frame's pixels where the annotator put it.

Sequences live with the data, not with the tracker: they are files read and written, and the
generated ones (moving_objects.py) are drawn like the image data sets; anything above the data
layer (a tracker, a video task, the server) can read them.

Box files are read into `Boxes`: one float64 array (K, 8) of frame, id, x1, y1, w, h, score
(gt: the consider flag), visibility (1 where the file has none). Frames are decoded on demand:
a MOTChallenge sequence of 600 full-HD frames holds 3.7 GB of pixels.
"""

from __future__ import annotations

import configparser
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write, atomic_write_text

COLUMNS = ("frame", "id", "x1", "y1", "w", "h", "score", "visibility")
FRAME, ID, X1, Y1, W, H, SCORE, VISIBILITY = range(len(COLUMNS))
Boxes = np.ndarray  # (K, 8) float64, the COLUMNS above, sorted by frame then id
SEQINFO_KEYS = ("name", "imDir", "frameRate", "seqLength", "imWidth", "imHeight", "imExt")


@dataclass
class Sequence:
    """A video: its frames, frame rate, and ground truth when it is known.

    `frame(t)` is frame t (1-based, as in the files) as (3, H, W) float32 in [0, 1]."""

    name: str
    length: int
    size: tuple[int, int]  # (H, W)
    fps: float
    frame: Callable[[int], Tensor]
    gt: Boxes | None = None  # gt.txt rows; score is the consider flag (0: ignored by the metrics)
    det: Boxes | None = None  # det.txt rows, when the sequence comes with public detections

    def frames(self) -> Tensor:
        """All frames at once (T, 3, H, W): for short sequences only."""
        return torch.stack([self.frame(t) for t in range(1, self.length + 1)])


def empty_boxes() -> Boxes:
    return np.zeros((0, len(COLUMNS)))


def read_boxes(path: Path, length: int | None = None) -> Boxes:
    """A MOTChallenge box file (gt.txt, det.txt or a tracker's results.txt) as `Boxes`.

    Each line needs at least 6 comma-separated numbers; a line that is not, a frame outside
    1..length, or a box of no width or height is named in one sentence."""
    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"box file {path} does not exist; MOTChallenge keeps them in gt/gt.txt and det/det.txt.")
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values = [float(v) for v in line.replace(" ", "").split(",") if v != ""]
        except ValueError:
            raise CnnlabError(f"{path} line {number} is not comma-separated numbers: '{line.strip()[:60]}'.") from None
        if len(values) < 6 or not np.isfinite(values).all():
            raise CnnlabError(
                f"{path} line {number} needs at least 6 finite numbers (frame, id, left, top, width, height), "
                f"got '{line.strip()[:60]}'."
            )
        frame, ident, left, top, w, h = values[:6]
        if frame != int(frame) or frame < 1 or (length is not None and frame > length):
            limit = f"1..{length}" if length is not None else "1 or more"
            raise CnnlabError(f"{path} line {number} names frame {frame:g}, outside the sequence's frames {limit}.")
        if w <= 0 or h <= 0:
            raise CnnlabError(f"{path} line {number} holds a box of width {w:g} and height {h:g}; both must be positive.")
        score = values[6] if len(values) > 6 else 1.0
        # gt.txt's 9th column is the visibility; det.txt's 8th-10th are world coordinates (-1)
        visibility = values[8] if len(values) > 8 and values[7] != -1 else 1.0
        rows.append([frame, ident, left - 1, top - 1, w, h, score, visibility])
    boxes = np.array(rows, dtype=np.float64).reshape(-1, len(COLUMNS))
    return boxes[np.lexsort((boxes[:, ID], boxes[:, FRAME]))]


def boxes_text(boxes: Boxes, kind: str) -> str:
    """MOTChallenge text of `boxes`: kind 'gt' (consider flag, class 1, visibility) or 'det' /
    'results' (score and three -1 for the world coordinates)."""
    lines = []
    for frame, ident, x1, y1, w, h, score, visibility in boxes.tolist():
        box = f"{int(frame)},{int(ident)},{x1 + 1:.2f},{y1 + 1:.2f},{w:.2f},{h:.2f}"
        lines.append(f"{box},{int(score)},1,{visibility:.4f}" if kind == "gt" else f"{box},{score:.4f},-1,-1,-1")
    return "".join(line + "\n" for line in lines)


def write_boxes(path: Path, boxes: Boxes, kind: str = "results") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, boxes_text(boxes, kind))
    return path


def read_mot(folder: str | Path) -> Sequence:
    """A MOTChallenge sequence folder: seqinfo.ini, the frames of img1/ (read when asked),
    gt/gt.txt and det/det.txt when present. What is missing or broken is named in one sentence."""
    from cnnlab.data.images import read_image

    folder = Path(folder)
    if not folder.is_dir():
        raise CnnlabError(f"MOTChallenge sequence {folder} is not a folder; give the folder that holds seqinfo.ini and img1/.")
    info = _seqinfo(folder / "seqinfo.ini")
    images = folder / info["imDir"]
    length, size = int(info["seqLength"]), (int(info["imHeight"]), int(info["imWidth"]))
    # the first missing frame only: a seqLength of a billion must not cost a billion look-ups
    missing = next((t for t in range(1, length + 1) if not (images / f"{t:06d}{info['imExt']}").is_file()), None)
    if missing is not None:
        raise CnnlabError(f"{images} lacks frame {missing:06d}{info['imExt']} of the {length} frames seqinfo.ini announces.")

    def frame(t: int) -> Tensor:
        return read_image(images / f"{t:06d}{info['imExt']}", 3, size)

    gt, det = folder / "gt" / "gt.txt", folder / "det" / "det.txt"
    return Sequence(
        name=info["name"], length=length, size=size, fps=float(info["frameRate"]), frame=frame,
        gt=read_boxes(gt, length) if gt.is_file() else None,
        det=read_boxes(det, length) if det.is_file() else None,
    )


def _seqinfo(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise CnnlabError(f"{path} does not exist; a MOTChallenge sequence folder holds seqinfo.ini beside img1/.")
    parser = configparser.ConfigParser(interpolation=None)  # a % in a value is text, not a reference
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # the keys are camelCase
    try:
        parser.read_string(path.read_text(errors="replace"))
    except configparser.Error as e:
        raise CnnlabError(f"{path} is not an INI file ({str(e).splitlines()[0]}).") from None
    if "Sequence" not in parser:
        raise CnnlabError(f"{path} has no [Sequence] section.")
    info = dict(parser["Sequence"])
    absent = [k for k in SEQINFO_KEYS if k not in info]
    if absent:
        raise CnnlabError(f"{path} lacks {', '.join(absent)} in its [Sequence] section.")
    for key in ("seqLength", "imWidth", "imHeight"):
        if not info[key].isdigit() or int(info[key]) < 1:
            raise CnnlabError(f"{path}: {key} must be a positive whole number, got '{info[key]}'.")
    try:
        if float(info["frameRate"]) <= 0:
            raise ValueError
    except ValueError:
        raise CnnlabError(f"{path}: frameRate must be a positive number, got '{info['frameRate']}'.") from None
    return info


def write_mot(sequence: Sequence, folder: str | Path) -> Path:
    """Write `sequence` as a MOTChallenge folder: seqinfo.ini, img1/*.png (lossless, so the
    frames read back are the frames written), gt/gt.txt and det/det.txt when it has them."""
    from PIL import Image

    folder = Path(folder)
    (folder / "img1").mkdir(parents=True, exist_ok=True)
    h, w = sequence.size
    for t in range(1, sequence.length + 1):
        image = Image.fromarray((sequence.frame(t) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())
        atomic_write(folder / "img1" / f"{t:06d}.png", lambda tmp, im=image: im.save(tmp, format="PNG"))
    info = {"name": sequence.name, "imDir": "img1", "frameRate": f"{sequence.fps:g}", "seqLength": sequence.length,
            "imWidth": w, "imHeight": h, "imExt": ".png"}
    atomic_write_text(folder / "seqinfo.ini", "[Sequence]\n" + "".join(f"{k}={v}\n" for k, v in info.items()))
    if sequence.gt is not None:
        write_boxes(folder / "gt" / "gt.txt", sequence.gt, "gt")
    if sequence.det is not None:
        write_boxes(folder / "det" / "det.txt", sequence.det, "det")
    return folder
