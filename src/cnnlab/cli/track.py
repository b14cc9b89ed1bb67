"""`cnnlab track SEQ --out DIR`: multi-object tracking (SORT, or with appearance) of a video."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli.output import JsonFlag, console, emit, table


def track(
    sequence: Annotated[str, typer.Argument(metavar="SEQ", help="mot:DIR (a MOTChallenge folder) or moving-objects[:SEED].")],
    out: Annotated[Path, typer.Option(help="Folder for results.txt, tracking.gif and tracking.json.")],
    detector: Annotated[Path | None, typer.Option(help="A detection run (yolo, ssd) to run on each frame.")] = None,
    min_score: Annotated[float, typer.Option(help="With --detector: the lowest score of a box given to the tracker.")] = 0.5,
    detections: Annotated[Path | None, typer.Option(help="A det.txt of detections (MOTChallenge format).")] = None,
    appearance: Annotated[Path | None, typer.Option(help="A classifier run whose penultimate features describe each box "
                                                         "(DeepSORT-style matching).")] = None,
    noise: Annotated[str, typer.Option(help="Without detections: the ground truth's boxes jittered by JITTER of their "
                                            "size, MISS of them missed, FALSE false boxes per frame.")] = "0.05,0.1,0.2",
    seed: Annotated[int, typer.Option(help="Seed of the noise.")] = 0,
    max_age: Annotated[int | None, typer.Option(help="Frames a lost track waits (default 1 for SORT, 30 with appearance).")] = None,
    min_hits: Annotated[int, typer.Option(help="Matches before a track is reported.")] = 3,
    motion_weight: Annotated[float, typer.Option(help="With --appearance: the weight of motion (1 - IoU) against "
                                                      "appearance (cosine distance) in a pair's cost.")] = 0.3,
    gif: Annotated[bool, typer.Option(help="Write the animated GIF.")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Track the objects of a video; with ground truth, print MOTA, MOTP, IDF1 and identity switches."""
    from cnnlab.track import track as run_tracking
    from cnnlab.track.detections import parse_noise

    record = run_tracking(sequence, out, detector=detector, detections=detections, appearance=appearance,
                          noise=parse_noise(noise), seed=seed, max_age=max_age, min_hits=min_hits, motion_weight=motion_weight,
                          min_score=min_score,
                          gif=gif)
    if as_json:
        emit(record)
        return
    console.print(f"{record['sequence']}: {record['frames']} frames, {record['detected_boxes']} detections from "
                  f"{record['detections']}, {record['tracks']} tracks ({record['tracker']})")
    if "mota" in record:
        keys = ["mota", "motp", "idf1", "id_switches", "id_switches_at_crossings", "fp", "fn", "gt"]
        console.print(table("tracking against the ground truth", keys,
                            [[f"{record[k]:.4f}" if isinstance(record[k], float) else record[k] for k in keys]]))
    for name, path in record["files"].items():
        console.print(f"{name}: {path}")
