"""Multi-object tracking: SORT and its appearance variant, MOTChallenge files, CLEAR-MOT and IDF1.

    from cnnlab.track import track
    record = track("moving-objects:3", "out/", appearance="runs/appearance")
    record["mota"], record["idf1"], record["id_switches"]
"""

from cnnlab.track.tracking import track

__all__ = ["track"]
