"""How well a tracker did: CLEAR-MOT (MOTA, MOTP, identity switches) and IDF1.

Both compare a tracker's boxes with the ground truth, frame by frame, as `Boxes` (data/mot.py:
frame, id, x1, y1, w, h, score, visibility); a tracker's box and a true one may correspond
when their IoU is at least 0.5, MOTChallenge's threshold.

First, as MOTChallenge's devkit does (Milan et al. 2016, "MOT16", section 4.1), a tracker's box
that covers a true box marked not to be considered (gt's flag 0: here an object almost wholly
hidden) is dropped: it is neither right nor false.

CLEAR-MOT (Bernardin & Stiefelhagen 2008, "Evaluating Multiple Object Tracking Performance:
The CLEAR MOT Metrics", section 2.1.2), frame by frame:
  1. a true object matched in the previous frame keeps its tracker id if that id's box still
     covers it (IoU >= 0.5): a correspondence is not broken for a slightly better one;
  2. the other objects and boxes are paired by the Hungarian algorithm on 1 - IoU (pairs under
     the threshold are not allowed);
  3. an object matched to another id than the last one it was matched to (however long ago)
     is an identity switch; objects left unmatched are misses (FN), boxes false positives (FP).

    MOTA = 1 - (FN + FP + IDSW) / GT        GT: true boxes over all frames
    MOTP = mean IoU of the matched pairs     (MOTChallenge's form; Bernardin's is a distance)

IDF1 (Ristani, Solera, Zou, Cucchiara & Tomasi 2016, "Performance Measures and a Data Set for
Multi-Target, Multi-Camera Tracking", section 4): each true trajectory is given at most one
tracker trajectory, and the other way round, so that the frames on which they agree
(IoU >= 0.5), IDTP, are as many as possible (a bipartite matching, solved by the Hungarian
algorithm on the counts); IDF1 = 2 IDTP / (true boxes + tracker boxes), with IDP = IDTP /
tracker boxes and IDR = IDTP / true boxes. Where MOTA counts the moments of a swap, IDF1 counts
the frames a trajectory spends under the wrong name.

motmetrics (1.4.0) is the usual library, but it calls np.asfarray, which numpy 2 removed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from cnnlab.data.mot import FRAME, ID, SCORE, X1, Boxes
from cnnlab.track.sort import iou_matrix

THRESHOLD = 0.5  # IoU: MOTChallenge's
CROSSING = 5  # frames: a switch this close to a moment its object touched another is one at a crossing


def match(overlap: np.ndarray, threshold: float = THRESHOLD) -> list[tuple[int, int]]:
    """Pairs (row, column) of the Hungarian algorithm on 1 - overlap, each pair at least
    `threshold`; pairs under it cost more than any allowed set, so as many pairs as possible are made."""
    if overlap.size == 0:
        return []
    cost = np.where(overlap >= threshold, 1 - overlap, overlap.size + 1.0)
    rows, cols = linear_sum_assignment(cost)
    return [(r, c) for r, c in zip(rows.tolist(), cols.tolist()) if overlap[r, c] >= threshold]


def drop_ignored(gt: Boxes, tracked: Boxes) -> tuple[Boxes, Boxes]:
    """The considered true boxes, and the tracker's boxes less those that match (IoU >= 0.5,
    Hungarian over all true boxes of their frame) a true box not to be considered."""
    keep = np.ones(len(tracked), dtype=bool)
    for frame in np.unique(tracked[:, FRAME]):
        g, t = np.nonzero(gt[:, FRAME] == frame)[0], np.nonzero(tracked[:, FRAME] == frame)[0]
        for r, c in match(iou_matrix(gt[g, X1:X1 + 4], tracked[t, X1:X1 + 4])):
            if gt[g[r], SCORE] == 0:
                keep[t[c]] = False
    return gt[gt[:, SCORE] != 0], tracked[keep]


def clear_mot(gt: Boxes, tracked: Boxes) -> dict[str, Any]:
    """mota, motp, id_switches, fp, fn, matches, gt (count of true boxes) and switches: the
    (frame, true id) of every identity switch."""
    gt, tracked = drop_ignored(gt, tracked)
    last: dict[int, int] = {}  # true id -> the tracker id it was last matched to
    previous: dict[int, int] = {}  # the same, for the matches of the frame before only
    fp = fn = matches = 0
    overlap_sum = 0.0
    switches: list[tuple[int, int]] = []
    for frame in np.union1d(gt[:, FRAME], tracked[:, FRAME]):
        g, t = gt[gt[:, FRAME] == frame], tracked[tracked[:, FRAME] == frame]
        overlap = iou_matrix(g[:, X1:X1 + 4], t[:, X1:X1 + 4])
        g_ids, t_ids = g[:, ID].astype(int).tolist(), t[:, ID].astype(int).tolist()
        pairs = []
        for r, o in enumerate(g_ids):  # 1. correspondences of the frame before, where they still hold
            if o in previous and previous[o] in t_ids:
                c = t_ids.index(previous[o])
                if overlap[r, c] >= THRESHOLD:
                    pairs.append((r, c))
        rows = [r for r in range(len(g)) if r not in {p[0] for p in pairs}]
        cols = [c for c in range(len(t)) if c not in {p[1] for p in pairs}]
        found = match(overlap[np.ix_(rows, cols)])  # 2. the others, by the Hungarian algorithm
        pairs += [(rows[r], cols[c]) for r, c in found]
        current = {}
        for r, c in pairs:  # 3. switches, misses and false positives
            o, h = g_ids[r], t_ids[c]
            if o in last and last[o] != h:
                switches.append((int(frame), o))
            last[o] = current[o] = h
            overlap_sum += overlap[r, c]
        previous = current
        matches += len(pairs)
        fn += len(g) - len(pairs)
        fp += len(t) - len(pairs)
    total = len(gt)
    return {
        "mota": 1 - (fn + fp + len(switches)) / total if total else float("nan"),
        "motp": overlap_sum / matches if matches else float("nan"),
        "id_switches": len(switches), "fp": fp, "fn": fn, "matches": matches, "gt": total, "switches": switches,
    }


def idf1(gt: Boxes, tracked: Boxes) -> dict[str, float]:
    """idf1, idp, idr and idtp: the identity measures of Ristani et al. 2016 (see the module)."""
    gt, tracked = drop_ignored(gt, tracked)
    g_ids, t_ids = np.unique(gt[:, ID]), np.unique(tracked[:, ID])
    agree = np.zeros((len(g_ids), len(t_ids)))  # frames on which true trajectory i and tracker trajectory j agree
    for frame in np.intersect1d(gt[:, FRAME], tracked[:, FRAME]):
        g, t = gt[gt[:, FRAME] == frame], tracked[tracked[:, FRAME] == frame]
        covers = iou_matrix(g[:, X1:X1 + 4], t[:, X1:X1 + 4]) >= THRESHOLD
        r, c = np.nonzero(covers)
        np.add.at(agree, (np.searchsorted(g_ids, g[r, ID]), np.searchsorted(t_ids, t[c, ID])), 1)
    rows, cols = linear_sum_assignment(-agree) if agree.size else ([], [])
    idtp = float(agree[rows, cols].sum())
    n_gt, n_tracked = len(gt), len(tracked)
    return {
        "idf1": 2 * idtp / (n_gt + n_tracked) if n_gt + n_tracked else float("nan"),
        "idp": idtp / n_tracked if n_tracked else float("nan"),
        "idr": idtp / n_gt if n_gt else float("nan"),
        "idtp": idtp,
    }


def scores(gt: Boxes, tracked: Boxes) -> dict[str, Any]:
    """CLEAR-MOT and IDF1 together: mota, motp, idf1, id_switches and the counts behind them."""
    return {**clear_mot(gt, tracked), **idf1(gt, tracked)}


def crossing_switches(gt: Boxes, switches: list[tuple[int, int]], window: int = CROSSING) -> int:
    """How many identity switches (frame, true id) happened at a crossing: within `window`
    frames of a frame on which the object's true box overlapped another true box."""
    touching = set()  # (frame, true id) of the objects whose box overlaps another's
    for frame in np.unique(gt[:, FRAME]):
        g = gt[gt[:, FRAME] == frame]
        overlap = iou_matrix(g[:, X1:X1 + 4], g[:, X1:X1 + 4])
        np.fill_diagonal(overlap, 0)
        touching |= {(int(frame), int(o)) for o in g[overlap.max(1, initial=0) > 0, ID]}
    return sum(any((f + d, o) in touching for d in range(-window, window + 1)) for f, o in switches)
