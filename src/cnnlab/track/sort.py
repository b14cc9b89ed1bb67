"""SORT, and its appearance variant in the manner of DeepSORT.

SORT (Bewley, Ge, Ott, Ramos & Upcroft 2016, "Simple Online and Realtime Tracking", ICIP):
each track is a Kalman filter with a constant-velocity model of its box, state
[u, v, s, r, u', v', s'] (centre, area, aspect ratio, and the velocities of the first three; the
aspect ratio is taken as constant). Each frame, every track predicts where its box is, the
detections are assigned to the predictions by the Hungarian algorithm on IoU (a pair under
IOU_MIN is refused), a matched track corrects its filter with its detection, an unmatched
detection starts a track, and a track unmatched for more than `max_age` frames ends. A track
is reported on the frames it is matched, once it has been matched `min_hits` times (and on the
first `min_hits` frames of the video, when no track can have been matched that often).
The constants are those of the authors' code (github.com/abewley/sort).

The appearance variant (Wojke, Bewley & Paulus 2017, "Simple Online and Realtime Tracking with
a Deep Association Metric", ICIP, section 2) keeps, for each track, the appearance features of
its last BUDGET detections; the appearance distance of a (track, detection) pair is the smallest
cosine distance between the detection's feature and the track's. Pairs are scored by DeepSORT's
weighted sum (eq. 5), c = λ d_motion + (1 - λ) d_appearance, with SORT's 1 - IoU as the motion
term, and are admissible only where the motion allows (IoU with the predicted box at least
IOU_MIN); one Hungarian assignment then takes them all. With appearance to tell two overlapping
objects apart, a lost track may coast much longer (`max_age` 30 frames, DeepSORT's) than SORT's
single frame: an object hidden behind another keeps its identity.

What was tried and dropped, measured on moving-objects:100-119 (noisy detections; not the
sequences of docs/results.md), identity switches: SORT 92, SORT with max_age 30 30. DeepSORT's
own association (a cascade that lets the most recently seen tracks choose first, on appearance
alone within a Mahalanobis gate on the centre, then IoU; tentative tracks dropped at their first
miss) 32: with one detection in ten missed, a new track often dies before it is confirmed and is
born again under a new id. The weighted sum without that rule: λ 0.8 30, λ 0.5 24, λ 0.3 20
(kept); with it, λ 0.5 39. A cosine gate (pairs further than 0.3 refused) added switches: the
crop of an object half-hidden at a crossing holds the other object too.

One change from the papers: DeepSORT's filter models the box as centre, aspect and height;
here both trackers share SORT's filter, so the two differ only in how they associate.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from cnnlab.errors import CnnlabError

IOU_MIN = 0.3  # SORT's: a detection overlapping a prediction less is not that track's
MAX_AGE, MIN_HITS = 1, 3  # SORT's: a track is dropped after 1 missed frame, reported after 3 hits
APPEARANCE_MAX_AGE = 30  # DeepSORT's: lost tracks wait 30 frames to be found again
BUDGET = 100  # DeepSORT's: features kept per track
MOTION_WEIGHT = 0.3  # λ of DeepSORT's eq. 5, chosen on moving-objects:100-119 (see above)
INFEASIBLE = 1e5

# Constant velocity: each of u, v, s moves by its velocity each frame.
F = np.eye(7)
F[0, 4] = F[1, 5] = F[2, 6] = 1.0
H = np.eye(4, 7)  # the detection measures u, v, s, r
# Noise of the authors' code: the measured area and aspect are less certain than the centre; an
# unseen velocity is very uncertain at first; the velocities (and most the area's) change slowly.
R = np.diag([1.0, 1.0, 10.0, 10.0])
P0 = np.diag([10.0, 10.0, 10.0, 10.0, 1e4, 1e4, 1e4])
Q = np.diag([1.0, 1.0, 1.0, 1.0, 0.01, 0.01, 1e-4])


def to_z(box: np.ndarray) -> np.ndarray:
    """x1, y1, w, h -> centre u, v, area s, aspect r = w / h."""
    x1, y1, w, h = box[:4]
    return np.array([x1 + w / 2, y1 + h / 2, w * h, w / h])


def to_box(z: np.ndarray) -> np.ndarray:
    """u, v, s, r -> x1, y1, w, h."""
    u, v, s, r = z[:4]
    w = np.sqrt(max(s * r, 0.0))
    h = s / w if w > 0 else 0.0
    return np.array([u - w / 2, v - h / 2, w, h])


class KalmanBox:
    """The constant-velocity Kalman filter of one box (Kalman 1960, in the form of Bewley's code)."""

    def __init__(self, box: np.ndarray) -> None:
        self.x = np.concatenate([to_z(box), np.zeros(3)])
        self.P = P0.copy()

    def predict(self) -> np.ndarray:
        """Move the state one frame ahead; returns the predicted box x1, y1, w, h."""
        if self.x[2] + self.x[6] <= 0:  # the area would shrink below zero: stop it shrinking
            self.x[6] = 0.0
        self.x = F @ self.x
        self.P = F @ self.P @ F.T + Q
        return self.box

    def update(self, box: np.ndarray) -> None:
        """Correct the state with a measured box x1, y1, w, h."""
        y = to_z(box) - H @ self.x  # the innovation
        S = H @ self.P @ H.T + R
        K = self.P @ H.T @ np.linalg.inv(S)  # the Kalman gain
        self.x = self.x + K @ y
        self.P = (np.eye(7) - K @ H) @ self.P

    @property
    def box(self) -> np.ndarray:
        return to_box(self.x)


@dataclass
class Track:
    id: int
    filter: KalmanBox
    hits: int = 0  # frames matched since birth (the authors' code counts from 0 at birth)
    missed: int = 0  # frames since the last match
    features: deque = field(default_factory=lambda: deque(maxlen=BUDGET))


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (len(a), len(b)) of boxes given as x1, y1, w, h rows."""
    a1, a2 = a[:, None, :2], a[:, None, :2] + a[:, None, 2:4]
    b1, b2 = b[None, :, :2], b[None, :, :2] + b[None, :, 2:4]
    inter = np.clip(np.minimum(a2, b2) - np.maximum(a1, b1), 0, None).prod(-1)
    union = a[:, None, 2:4].prod(-1) + b[None, :, 2:4].prod(-1) - inter
    return inter / np.maximum(union, 1e-12)


def assign(cost: np.ndarray, limit: float) -> list[tuple[int, int]]:
    """Pairs (row, column) of the Hungarian algorithm on `cost` whose cost is at most `limit`."""
    if cost.size == 0:
        return []
    rows, cols = linear_sum_assignment(cost)
    return [(r, c) for r, c in zip(rows.tolist(), cols.tolist()) if cost[r, c] <= limit]


def match_iou(predicted: np.ndarray, boxes: np.ndarray, iou_min: float = IOU_MIN) -> list[tuple[int, int]]:
    """SORT's association: (prediction, detection) pairs maximising the total IoU, each at least `iou_min`."""
    return assign(1 - iou_matrix(predicted, boxes), 1 - iou_min)


class Sort:
    """`update(boxes)` once per frame -> the tracks reported on it, as rows x1, y1, w, h, id."""

    def __init__(self, max_age: int = MAX_AGE, min_hits: int = MIN_HITS, iou_min: float = IOU_MIN) -> None:
        self.max_age, self.min_hits, self.iou_min = max_age, min_hits, iou_min
        self.tracks: list[Track] = []
        self.frame = 0
        self.next_id = 1

    def update(self, boxes: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        """boxes (K, 4) x1, y1, w, h of this frame's detections; features (K, D), unit length,
        for the appearance variant. Returns (M, 5): x1, y1, w, h, id of the reported tracks."""
        self.frame += 1
        predicted = np.array([t.filter.predict() for t in self.tracks]).reshape(-1, 4)
        for t in self.tracks:
            t.missed += 1
        pairs = self.associate(predicted, boxes, features)
        for ti, di in pairs:
            track = self.tracks[ti]
            track.filter.update(boxes[di])
            track.hits, track.missed = track.hits + 1, 0
            if features is not None:
                track.features.append(features[di])
        taken = {di for _, di in pairs}
        for di in range(len(boxes)):
            if di not in taken:
                self.tracks.append(Track(self.next_id, KalmanBox(boxes[di])))
                if features is not None:
                    self.tracks[-1].features.append(features[di])
                self.next_id += 1
        # Reported once confirmed, as DeepSORT reports. The authors' SORT code waits for min_hits
        # matches in a row again after every miss: at one detection in ten missed that cost 0.09-0.13
        # MOTA on moving-objects:0-5 (0.60-0.70 against 0.71-0.83), every miss hiding 3 frames.
        reported = [np.append(t.filter.box, t.id) for t in self.tracks
                    if t.missed == 0 and (t.hits >= self.min_hits or self.frame <= self.min_hits)]
        self.tracks = [t for t in self.tracks if t.missed <= self.max_age]
        return np.array(reported).reshape(-1, 5)

    def associate(self, predicted: np.ndarray, boxes: np.ndarray, features: np.ndarray | None) -> list[tuple[int, int]]:
        """(track, detection) pairs of this frame."""
        return match_iou(predicted, boxes, self.iou_min)


class AppearanceSort(Sort):
    """SORT whose association also weighs the appearance of the boxes (DeepSORT's eq. 5)."""

    def __init__(self, max_age: int = APPEARANCE_MAX_AGE, min_hits: int = MIN_HITS, iou_min: float = IOU_MIN,
                 motion_weight: float = MOTION_WEIGHT) -> None:
        super().__init__(max_age, min_hits, iou_min)
        if not 0 <= motion_weight <= 1:
            raise CnnlabError(f"--motion-weight must lie in [0, 1], got {motion_weight}.")
        self.motion_weight = motion_weight

    def associate(self, predicted: np.ndarray, boxes: np.ndarray, features: np.ndarray | None) -> list[tuple[int, int]]:
        if features is None or len(features) != len(boxes):
            raise CnnlabError("the appearance tracker needs one feature per detection; pass features= to update.")
        if not self.tracks or not len(boxes):
            return []
        overlap = iou_matrix(predicted, boxes)
        looks = np.array([self.cosine(t, features) for t in self.tracks])
        cost = self.motion_weight * (1 - overlap) + (1 - self.motion_weight) * looks
        return assign(np.where(overlap >= self.iou_min, cost, INFEASIBLE), INFEASIBLE / 2)

    @staticmethod
    def cosine(track: Track, features: np.ndarray) -> np.ndarray:
        """The smallest cosine distance from each feature (K, D) to the track's kept features."""
        return (1 - features @ np.array(track.features).T).min(1)
