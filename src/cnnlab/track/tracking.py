"""`track(sequence, out)`: track the objects of a video and, where the truth is known, score it.

    sequence     'mot:DIR' (a MOTChallenge folder) or 'moving-objects[:SEED]' (generated)
    detections   in this order: a detection run on each frame (`detector`), a det.txt file
                 (`detections`), the sequence's own det/det.txt, or its ground truth made
                 noisy (`noise`: jitter, misses, false positives), to measure tracking alone
    tracker      SORT, or with `appearance` (a classifier run) its DeepSORT-style variant

Writes OUT/results.txt (MOTChallenge's format), OUT/tracking.gif and OUT/tracking.json (what
is returned: the counts, the files and, with ground truth, mota, motp, idf1, id_switches).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.data.mot import FRAME, X1, Boxes, Sequence, read_boxes, read_mot, write_boxes
from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write_text, json_text
from cnnlab.track.appearance import Embedder
from cnnlab.track.detections import NOISE, SCORE_THRESHOLD, detect, noisy_detections
from cnnlab.track.sort import APPEARANCE_MAX_AGE, MAX_AGE, MIN_HITS, MOTION_WEIGHT, AppearanceSort, Sort

RESULTS, GIF, RECORD = "results.txt", "tracking.gif", "tracking.json"


def load_sequence(name: str | Path) -> Sequence:
    """'mot:DIR' or 'moving-objects[:SEED]' as a Sequence."""
    from cnnlab.data.moving_objects import moving_objects, parse_seed

    text = str(name)
    if text.startswith("mot:"):
        return read_mot(text[len("mot:"):])
    if text.partition(":")[0] == "moving-objects":
        return moving_objects(parse_seed(text))
    raise CnnlabError(f"'{text}' is no sequence; give mot:DIR (a MOTChallenge folder) or moving-objects[:SEED].")


def run_tracker(sequence: Sequence, detections: Boxes, tracker: Sort, embedder: Embedder | None = None) -> Boxes:
    """Feed the tracker each frame's detections (and their features); its tracks as Boxes rows
    frame, id, x1, y1, w, h, 1, 1."""
    rows = []
    for t in range(1, sequence.length + 1):
        boxes = detections[detections[:, FRAME] == t, X1:X1 + 4]
        features = embedder(sequence.frame(t), boxes) if embedder is not None else None
        for x1, y1, w, h, ident in tracker.update(boxes, features).tolist():
            rows.append([t, ident, x1, y1, w, h, 1.0, 1.0])
    return np.array(rows, dtype=np.float64).reshape(-1, 8)


def track(
    sequence: str | Path | Sequence,
    out: str | Path,
    detector: str | Path | None = None,
    detections: str | Path | None = None,
    appearance: str | Path | None = None,
    noise: tuple[float, float, float] = NOISE,
    seed: int = 0,
    max_age: int | None = None,
    min_hits: int = MIN_HITS,
    motion_weight: float = MOTION_WEIGHT,
    min_score: float = SCORE_THRESHOLD,
    gif: bool = True,
) -> dict[str, Any]:
    """Track `sequence` and write the results into `out` (see the module); returns the record."""
    from cnnlab.track.animation import tracking_gif
    from cnnlab.track.metrics import crossing_switches, scores

    if detector is not None and detections is not None:
        raise CnnlabError("give --detector RUN or --detections FILE, not both.")
    if (max_age is not None and max_age < 0) or min_hits < 0:
        raise CnnlabError(f"--max-age and --min-hits must be 0 or more, got {max_age} and {min_hits}.")
    if not 0 <= min_score <= 1:
        raise CnnlabError(f"--min-score must lie in [0, 1], got {min_score}.")
    seq = sequence if isinstance(sequence, Sequence) else load_sequence(sequence)
    if detector is not None:
        found, source = detect(detector, seq, min_score), f"detection run {Path(detector).name} (score >= {min_score:g})"
    elif detections is not None:
        found, source = read_boxes(Path(detections), seq.length), str(detections)
    elif seq.det is not None:
        found, source = seq.det, "the sequence's det/det.txt"
    elif seq.gt is not None:
        # each sequence its own noise: two generated sequences of equal size must not miss the same rows
        noise_seed = [seed, zlib.crc32(seq.name.encode())]
        found = noisy_detections(seq.gt, seq.size, noise, noise_seed)
        source = "ground truth with noise (jitter, miss, false) " + ",".join(f"{v:g}" for v in noise)
    else:
        raise CnnlabError(f"sequence {seq.name} has no det/det.txt and no ground truth; give --detector RUN or --detections FILE.")
    if appearance is not None:
        embedder = Embedder(appearance)
        tracker: Sort = AppearanceSort(APPEARANCE_MAX_AGE if max_age is None else max_age, min_hits,
                                       motion_weight=motion_weight)
        name = f"sort+appearance ({embedder.name})"
    else:
        embedder, tracker, name = None, Sort(MAX_AGE if max_age is None else max_age, min_hits), "sort"
    tracked = run_tracker(seq, found, tracker, embedder)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"results": write_boxes(out / RESULTS, tracked, "results")}
    if gif:
        files["gif"] = tracking_gif(seq, tracked, out / GIF)
    record: dict[str, Any] = {
        "sequence": seq.name, "frames": seq.length, "tracker": name, "detections": source,
        "detected_boxes": len(found), "tracks": len(np.unique(tracked[:, 1])), "files": {k: str(v) for k, v in files.items()},
    }
    if seq.gt is not None:
        got = scores(seq.gt, tracked)
        got["id_switches_at_crossings"] = crossing_switches(seq.gt, got["switches"])
        record |= got
    atomic_write_text(out / RECORD, json_text(record))
    record["files"]["record"] = str(out / RECORD)
    return record
