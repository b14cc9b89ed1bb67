"""How well does `cnnlab track` follow objects? MOTA, MOTP, IDF1 and identity switches pooled
over generated sequences `moving-objects:FIRST` .. `:LAST-1`.

Each sequence is tracked by `cnnlab.track.track` (SORT, or with --appearance the variant that
also weighs the boxes' looks); the counts of all sequences are added before the ratios are taken:

    MOTA = 1 - (misses + false positives + identity switches) / true boxes
    MOTP = mean IoU of the matched pairs, IDF1 = 2 IDTP / (true boxes + tracked boxes)

Evidence (docs/results.md, "Multi-object tracking"), sequences 0-19 (7,486 true boxes), torch
2.14.1, 2 shared cores (counts: the load changes none of them), noisy ground-truth detections:
SORT MOTA 0.8137, IDF1 0.7491, 83 switches (69 at crossings); SORT + appearance (LeNet-5 on
moving-crops) MOTA 0.8476, IDF1 0.8858, 23 switches (22 at crossings); SORT with max_age 30
MOTA 0.8448, 28 switches. About a minute per tracker for the 20 sequences under load ~17.

    python benchmarks/tracking.py [--appearance RUN] [--max-age N] [--detector RUN --min-score 0.3] [--seeds 0:20]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from cnnlab.track import track

COUNTS = ("gt", "fn", "fp", "id_switches", "id_switches_at_crossings", "idtp", "matches")


def pooled(seeds: range, out: Path, **options) -> dict[str, float]:
    """Track each sequence and add up its counts; the ratios of the sums."""
    total = dict.fromkeys(COUNTS, 0.0)
    overlap = tracked = 0.0
    for seed in seeds:
        record = track(f"moving-objects:{seed}", out / str(seed), gif=False, **options)
        total = {k: total[k] + record[k] for k in COUNTS}
        overlap += record["motp"] * record["matches"]
        tracked += record["idtp"] / record["idp"] if record["idtp"] else 0  # IDP = IDTP / tracked boxes
    return {
        "mota": 1 - (total["fn"] + total["fp"] + total["id_switches"]) / total["gt"],
        "motp": overlap / total["matches"],
        "idf1": 2 * total["idtp"] / (total["gt"] + tracked),
        **total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appearance", help="a classifier run: track with appearance")
    parser.add_argument("--max-age", type=int, help="frames a lost track waits (default: the tracker's)")
    parser.add_argument("--detector", help="a detection run instead of noisy ground truth")
    parser.add_argument("--min-score", type=float, default=0.5, help="with --detector: the lowest score kept")
    parser.add_argument("--seeds", default="0:20", help="FIRST:LAST, LAST excluded")
    args = parser.parse_args()
    first, last = (int(v) for v in args.seeds.split(":"))
    options = {"appearance": args.appearance, "max_age": args.max_age, "detector": args.detector,
               "min_score": args.min_score}
    with tempfile.TemporaryDirectory() as out:
        print(json.dumps({k: round(v, 4) for k, v in pooled(range(first, last), Path(out), **options).items()}))


if __name__ == "__main__":
    main()
