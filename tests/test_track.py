"""Tracking: the Kalman filter and IoU matching of SORT, the appearance variant, CLEAR-MOT and
IDF1 on hand-worked cases, MOTChallenge files, and `cnnlab track` end to end."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from cnnlab.data.mot import Sequence, read_boxes, read_mot, write_mot
from cnnlab.data.moving_objects import moving_objects
from cnnlab.errors import CnnlabError
from cnnlab.track import track
from cnnlab.track.metrics import clear_mot, idf1
from cnnlab.track.sort import P0, AppearanceSort, KalmanBox, Sort, match_iou


def test_kalman_predict_and_update_of_a_hand_worked_box() -> None:
    kf = KalmanBox(np.array([0.0, 0.0, 10.0, 10.0]))  # centre (5, 5), area 100, aspect 1, at rest
    assert kf.predict().tolist() == pytest.approx([0, 0, 10, 10])  # no velocity yet: it stays
    # the centre's variance after one step: its own 10, the unseen velocity's 10^4 moved in, and Q's 1
    p_uu, p_uv = P0[0, 0] + P0[4, 4] + 1, P0[4, 4]
    assert kf.P[0, 0] == pytest.approx(p_uu) and kf.P[0, 4] == pytest.approx(p_uv)
    kf.update(np.array([2.0, 0.0, 10.0, 10.0]))  # measured 2 px to the right
    gain = p_uu / (p_uu + 1)  # R's 1 for the centre
    assert kf.x[0] == pytest.approx(5 + 2 * gain)
    assert kf.x[4] == pytest.approx(2 * p_uv / (p_uu + 1))  # the velocity learns nearly all of the 2 px
    assert kf.x[1] == pytest.approx(5) and kf.x[2] == pytest.approx(100)
    assert kf.predict()[0] == pytest.approx(kf.x[0] - 5)  # the next prediction moves on by that velocity


def test_iou_matching_pairs_by_overlap_and_refuses_weak_pairs() -> None:
    predicted = np.array([[0, 0, 10, 10], [50, 50, 10, 10], [100, 0, 10, 10]], dtype=float)
    boxes = np.array([[51, 50, 10, 10], [1, 1, 10, 10], [105, 0, 10, 10]], dtype=float)  # the last overlaps 1/3
    assert sorted(match_iou(predicted, boxes)) == [(0, 1), (1, 0), (2, 2)]
    assert sorted(match_iou(predicted, boxes, iou_min=0.4)) == [(0, 1), (1, 0)]


def test_sort_keeps_two_objects_apart_and_reports_after_min_hits() -> None:
    tracker = Sort(max_age=1, min_hits=3)
    for t in range(8):
        boxes = np.array([[2.0 * t, 0, 10, 10], [40, 3.0 * t, 10, 10]])
        out = tracker.update(boxes)
    assert out[:, 4].tolist() == [1, 2]
    assert out[0, :4] == pytest.approx([14, 0, 10, 10], abs=0.3)  # the filtered box is on the last detection


def test_appearance_keeps_an_identity_through_an_occlusion_where_sort_loses_it() -> None:
    """An object unseen for 5 frames comes back on its path: SORT (max_age 1) starts a new track,
    the appearance variant finds it again by its feature, within the motion gate."""
    feature = np.array([[1.0, 0.0]])
    ids = {}
    for name, tracker in (("sort", Sort()), ("appearance", AppearanceSort())):
        seen = []
        for t in range(20):
            boxes = np.array([[2.0 * t, 20, 10, 10]]) if not 8 <= t < 13 else np.zeros((0, 4))
            out = tracker.update(boxes, feature[: len(boxes)])
            seen += out[:, 4].tolist()
        ids[name] = sorted(set(seen))
    assert ids == {"sort": [1, 2], "appearance": [1]}


def test_appearance_refuses_a_look_alike_outside_the_motion_gate() -> None:
    tracker = AppearanceSort(min_hits=1)
    feature = np.array([[0.0, 1.0]])
    for t in range(5):
        tracker.update(np.array([[2.0 * t, 20, 10, 10]]), feature)
    tracker.update(np.zeros((0, 4)), np.zeros((0, 2)))
    far = tracker.update(np.array([[80.0, 80, 10, 10]]), feature)  # same look, 70 px off its path
    assert far[:, 4].tolist() == []  # a new, tentative track: not reported yet
    assert [(t.id, t.missed) for t in tracker.tracks] == [(1, 2), (2, 0)]


def _rows(*boxes: tuple) -> np.ndarray:
    """Boxes rows (frame, id, x1, y1, w, h, score 1, visibility 1)."""
    return np.array([[*b, 1.0, 1.0] for b in boxes], dtype=float)


A, B = (0, 0, 10, 10), (50, 0, 10, 10)


def test_clear_mot_and_idf1_of_a_hand_worked_swap() -> None:
    """Two objects over 4 frames. The tracker follows both (frame 2: B's box 2 px off, IoU 80/120),
    swaps their ids on frame 3 (2 switches), loses B and adds a far false box on frame 4.
    GT 8, FN 1, FP 1, IDSW 2: MOTA = 1 - 4/8. MOTP = (6 + 2/3) / 7 matches.
    IDF1: the best pairing (1-1, 2-2) agrees on 2 + 2 frames: 2 * 4 / (8 true + 8 tracked)."""
    gt = _rows(*[(t, i, *box) for t in range(1, 5) for i, box in ((1, A), (2, B))])
    tracked = _rows((1, 1, *A), (1, 2, *B), (2, 1, *A), (2, 2, 52, 0, 10, 10), (3, 2, *A), (3, 1, *B), (4, 2, *A),
                    (4, 3, 200, 200, 10, 10))
    got = clear_mot(gt, tracked)
    assert (got["gt"], got["fn"], got["fp"], got["id_switches"], got["matches"]) == (8, 1, 1, 2, 7)
    assert got["switches"] == [(3, 1), (3, 2)]
    assert got["mota"] == pytest.approx(0.5)
    assert got["motp"] == pytest.approx((6 + 2 / 3) / 7)
    ident = idf1(gt, tracked)
    assert (ident["idtp"], ident["idf1"]) == (4, pytest.approx(0.5))
    assert ident["idp"] == pytest.approx(4 / 8) and ident["idr"] == pytest.approx(4 / 8)


def test_clear_mot_keeps_a_correspondence_that_still_holds_and_ignores_hidden_objects() -> None:
    """Frame 2: track 2 overlaps object 1 better (IoU 1) than track 1 (IoU 8.5*10/115 = 0.74),
    but track 1 still covers it: no switch, track 2 is a false positive. A box on an object
    marked not to be considered (flag 0) is neither right nor false."""
    gt = _rows((1, 1, *A), (2, 1, *A))
    gt = np.vstack([gt, [[2, 9, 100, 100, 10, 10, 0, 0.1]]])
    tracked = _rows((1, 1, 1.5, 0, 10, 10), (2, 1, 1.5, 0, 10, 10), (2, 2, *A), (2, 3, 100, 100, 10, 10))
    got = clear_mot(gt, tracked)
    assert (got["id_switches"], got["fp"], got["fn"], got["gt"]) == (0, 1, 0, 2)
    assert got["mota"] == pytest.approx(0.5)


def test_moving_objects_are_seeded_and_cross() -> None:
    one, again = moving_objects(4, frames=30), moving_objects(4, frames=30)
    assert (one.frames() == again.frames()).all() and (one.gt == again.gt).all()
    ids = np.unique(one.gt[:, 1])
    assert 3 <= len(ids) <= 6 and len(one.gt) == 30 * len(ids)
    assert one.gt[:, 7].min() < 0.9  # somewhere one object hides part of another
    assert one.frames().shape == (30, 3, 96, 96)


def test_mot_files_round_trip(tmp_path: Path) -> None:
    seq = moving_objects(2, frames=4)
    seq.det = seq.gt[::2].copy()
    folder = write_mot(seq, tmp_path / "seq")
    back = read_mot(folder)
    assert (back.name, back.length, back.size, back.fps) == (seq.name, 4, (96, 96), seq.fps)
    assert (back.frames() - seq.frames()).abs().max() <= 0.5 / 255 + 1e-6  # PNG: lossless up to 8 bits
    assert np.allclose(back.gt, seq.gt, atol=1e-4) and np.allclose(back.det[:, 2:6], seq.det[:, 2:6])
    assert (folder / "gt" / "gt.txt").read_text().splitlines()[0].startswith("1,1,")


@pytest.mark.parametrize(("broken", "message"), [
    (lambda f: (f / "seqinfo.ini").write_text("[Sequence]\nname=x\n"), "lacks imDir"),
    (lambda f: (f / "seqinfo.ini").unlink(), "seqinfo.ini does not exist"),
    (lambda f: (f / "img1" / "000003.png").unlink(), "lacks frame 000003.png of the 4 frames"),
    (lambda f: (f / "gt" / "gt.txt").write_text("1,1,5,5,10,10,1,1,1\n1,2,five,5,10,10,1,1,1\n"), "gt.txt line 2 is not"),
    (lambda f: (f / "gt" / "gt.txt").write_text("9,1,5,5,10,10,1,1,1\n"), "line 1 names frame 9, outside .*1..4"),
    (lambda f: (f / "det" / "det.txt").write_text("1,-1,5,5,0,10,0.9\n"), "det.txt line 1 holds a box of width 0"),
    (lambda f: (f / "det" / "det.txt").write_text("1,-1,5,5\n"), "needs at least 6 finite numbers"),
])
def test_broken_mot_files_are_named_in_one_sentence(tmp_path: Path, broken, message: str) -> None:
    seq = moving_objects(1, frames=4)
    seq.det = seq.gt.copy()
    folder = write_mot(seq, tmp_path / "seq")
    broken(folder)
    with pytest.raises(CnnlabError, match=message):
        read_mot(folder)


def _hand_made_mot(folder: Path) -> None:
    """8 frames of 64x64, two squares moving apart from each other, written as a user's files:
    gt.txt exact; det.txt misses square 1 on frame 5 and has a false box on frame 3."""
    (folder / "img1").mkdir(parents=True)
    (folder / "gt").mkdir()
    (folder / "det").mkdir()
    gt, det = [], []
    for t in range(1, 9):
        boxes = {1: (4 + 3 * t, 4), 2: (40, 4 + 3 * t)}
        pixels = np.full((64, 64, 3), 40, dtype=np.uint8)
        for ident, (x, y) in boxes.items():
            pixels[y:y + 12, x:x + 12] = (220, 60, 60) if ident == 1 else (60, 220, 60)
            gt.append(f"{t},{ident},{x + 1},{y + 1},12,12,1,1,1\n")
            if not (t == 5 and ident == 1):
                det.append(f"{t},-1,{x + 1},{y + 1},12,12,0.9,-1,-1,-1\n")
        if t == 3:
            det.append("3,-1,30,45,10,10,0.6,-1,-1,-1\n")
        Image.fromarray(pixels).save(folder / "img1" / f"{t:06d}.jpg", quality=95)
    (folder / "gt" / "gt.txt").write_text("".join(gt))
    (folder / "det" / "det.txt").write_text("".join(det))
    (folder / "seqinfo.ini").write_text(
        "[Sequence]\nname=hand-made\nimDir=img1\nframeRate=10\nseqLength=8\nimWidth=64\nimHeight=64\nimExt=.jpg\n")


def _mota_by_hand(gt_file: Path, results_file: Path) -> float:
    """MOTA counted the simple way, right for objects far apart: a result box is an object's
    when it overlaps it by IoU 0.5 or more; each object's first id is its own."""
    def parse(path: Path) -> dict[int, list[tuple[int, list[float]]]]:
        frames: dict[int, list[tuple[int, list[float]]]] = {}
        for line in path.read_text().splitlines():
            v = [float(x) for x in line.split(",")]
            frames.setdefault(int(v[0]), []).append((int(v[1]), v[2:6]))
        return frames

    def overlap(a: list[float], b: list[float]) -> float:
        w = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
        return w * h / (a[2] * a[3] + b[2] * b[3] - w * h)

    truth, results = parse(gt_file), parse(results_file)
    misses = false = switches = total = 0
    last: dict[int, int] = {}
    for t, objects in truth.items():
        found = list(results.get(t, []))
        total += len(objects)
        for ident, box in objects:
            mine = [r for r in found if overlap(r[1], box) >= 0.5]
            if not mine:
                misses += 1
                continue
            found.remove(mine[0])
            switches += ident in last and last[ident] != mine[0][0]
            last[ident] = mine[0][0]
        false += len(found)
    return 1 - (misses + false + switches) / total


def test_cnnlab_track_on_a_mot_folder_reports_the_mota_of_its_own_results(tmp_path: Path, cli) -> None:
    _hand_made_mot(tmp_path / "seq")
    result = cli("track", f"mot:{tmp_path / 'seq'}", "--out", tmp_path / "out", "--json")
    assert result.code == 0, result.err
    record = json.loads(result.out)
    assert record["detections"] == "the sequence's det/det.txt" and record["gt"] == 16
    assert record["mota"] == pytest.approx(_mota_by_hand(tmp_path / "seq" / "gt" / "gt.txt", tmp_path / "out" / "results.txt"))
    # the missed frame costs a miss; the false box is reported on frame 3, when every track is (frames <= min_hits)
    assert (record["mota"], record["fn"], record["fp"], record["id_switches"]) == (1 - 2 / 16, 1, 1, 0)
    assert set(read_boxes(tmp_path / "out" / "results.txt")[:, 1]) == {1, 2, 3}
    with Image.open(record["files"]["gif"]) as gif:
        assert gif.n_frames == 8 and gif.size == (288, 288)
    table = cli("track", f"mot:{tmp_path / 'seq'}", "--out", tmp_path / "out2", "--no-gif")
    assert table.code == 0 and "mota" in table.out and not (tmp_path / "out2" / "tracking.gif").exists()


def test_cnnlab_track_names_bad_input(tmp_path: Path, cli, trained_run) -> None:
    bad = cli("track", "moving-objects:x", "--out", tmp_path / "o")
    assert bad.code == 1 and "moving-objects:SEED" in bad.err and "Traceback" not in bad.err
    assert "not a folder" in cli("track", f"mot:{tmp_path / 'none'}", "--out", tmp_path / "o").err
    assert "three numbers" in cli("track", "moving-objects", "--out", tmp_path / "o", "--noise", "0.1").err
    detector = cli("track", "moving-objects", "--out", tmp_path / "o", "--detector", trained_run.path)
    assert detector.code == 1 and "needs a detection run" in detector.err


def test_noisy_tracking_of_a_generated_sequence_with_and_without_appearance(tmp_path: Path, trained_run) -> None:
    """Any classifier run gives appearance features (here LeNet-5 of digits, on gray crops)."""
    seq = moving_objects(3, frames=30)
    plain = track(seq, tmp_path / "sort", gif=False)
    assert 0.5 < plain["mota"] <= 1 and plain["motp"] > 0.8 and plain["detections"].startswith("ground truth with noise")
    looks = track(seq, tmp_path / "appearance", appearance=trained_run.path, gif=False)
    assert looks["tracker"] == f"sort+appearance ({trained_run.path.name})" and 0.5 < looks["mota"] <= 1
    assert json.loads((tmp_path / "appearance" / "tracking.json").read_text())["idf1"] == pytest.approx(looks["idf1"])
    exact = track(seq, tmp_path / "exact", noise=(0.0, 0.0, 0.0), min_hits=0, gif=False)
    assert exact["id_switches"] == 0 or exact["id_switches_at_crossings"] == exact["id_switches"]


def test_a_sequence_without_detections_or_truth_is_refused(tmp_path: Path) -> None:
    seq = moving_objects(0, frames=3)
    bare = Sequence(seq.name, seq.length, seq.size, seq.fps, seq.frame)
    with pytest.raises(CnnlabError, match="no det/det.txt and no ground truth"):
        track(bare, tmp_path / "o")


@pytest.mark.slow  # about 6 s of CPU (a yolo epoch), 30 s wall under load
def test_a_detection_run_detects_on_each_frame_in_the_frames_pixels(tmp_path: Path) -> None:
    """A yolo run (one epoch on 32 scenes: only the plumbing is tested) asked for every box
    gives COCO's 100 per frame, inside the frame, and the tracker takes them."""
    import cnnlab
    from cnnlab.data.dataset import Dataset, Split
    from cnnlab.data.shapes import CLASSES, scenes
    from cnnlab.track.detections import detect

    x, y = scenes(40, 15)
    data = Dataset(name="shapes", classes=list(CLASSES), train=Split(x[:32], y[:32]), val=Split(x[32:], y[32:]),
                   test=Split(x[32:], y[32:]), task="detect")
    run = cnnlab.train(model="yolo", data=data, epochs=1, batch_size=16, out=tmp_path / "yolo", quiet=True)
    seq = moving_objects(1, frames=3)
    found = detect(run.path, seq, score_threshold=0.0)
    assert np.bincount(found[:, 0].astype(int)).tolist() == [0, 100, 100, 100]
    assert (found[:, 2:4] >= -0.5).all() and (found[:, 2:4] + found[:, 4:6] <= 96.5).all()
    record = track(seq, tmp_path / "out", detector=run.path, min_score=0.0, gif=False)
    assert record["detected_boxes"] == 300 and record["detections"] == "detection run yolo (score >= 0)"


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="0123456789,.-e %[]=\nabcSeqnm", max_size=120))
def test_any_text_as_box_file_or_seqinfo_reads_or_is_named(text: str) -> None:
    """Whatever a gt.txt or seqinfo.ini holds, reading it gives boxes or one CnnlabError."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gt.txt"
        path.write_text(text)
        try:
            boxes = read_boxes(path, length=50)
            assert boxes.shape[1] == 8 and ((boxes[:, 4:6] > 0).all())
        except CnnlabError as e:
            assert str(e).endswith(".")
        (Path(folder) / "seqinfo.ini").write_text("[Sequence]\n" + text)
        with pytest.raises(CnnlabError):
            read_mot(folder)  # no frames were written: never a sequence
