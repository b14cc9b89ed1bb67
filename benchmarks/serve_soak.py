"""A bounded soak of `cnnlab serve`: mixed requests from several clients for `--seconds`, then
checks that memory stayed flat, that no answer was other than expected, and that the server
still answers correctly.

The mix, drawn in turn by each client: predictions (multipart and raw body), Grad-CAM, FGSM and
PGD attacks, the explorer's maps, short playground trainings (429 when two already run), and
junk that must be refused with its 4xx: random bytes, a cut PNG, a decompression-bomb header, a
run name that climbs out of the folder, k out of range, absurd attack steps, an absurd playground
training. Every answer's status is compared with the ones expected for its kind; any other (a
5xx above all) is an error. The server's resident memory is sampled every few seconds: printed
are its value after the first tenth of the soak (warm), its peak, its end, and the growth from
warm to end.

Loopback only, bounded in time, stops by itself (the server is stopped in any case).
Results: docs/benchmarks.md.

    python benchmarks/serve_soak.py RUN [--seconds 600] [--clients 8]
"""

from __future__ import annotations

import argparse
import random
import signal
import struct
import sys
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from serve_load import digit_png, free_port, start, stop  # noqa: E402  the same server handling as the load benchmark

MAX_GROWTH_MB = 50  # warm to end: what a leak of a few kB per request would pass in ten minutes


def bomb_png(width: int, height: int) -> bytes:
    """A PNG header declaring width x height pixels with almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def requests_mix(png: bytes) -> list[tuple[str, dict, set[int]]]:
    """(name, httpx request arguments, the statuses that are right for it)."""
    image = {"files": {"file": ("d.png", png, "image/png")}}
    return [
        ("predict", {"method": "POST", "url": "/api/predict", **image}, {200}),
        ("predict raw", {"method": "POST", "url": "/api/predict", "content": png, "headers": {"Content-Type": "image/png"}}, {200}),
        ("explain", {"method": "POST", "url": "/api/explain", **image}, {200}),
        ("fgsm", {"method": "POST", "url": "/api/attack", **image, "data": {"eps": "0.2"}}, {200}),
        ("pgd", {"method": "POST", "url": "/api/attack", **image, "data": {"eps": "0.2", "method": "pgd", "steps": "10"}}, {200}),
        ("features", {"method": "POST", "url": "/api/features", **image}, {200}),
        ("junk bytes", {"method": "POST", "url": "/api/predict", "files": {"file": ("j.png", random.randbytes(500))}}, {400}),
        ("cut png", {"method": "POST", "url": "/api/predict", "files": {"file": ("c.png", png[: len(png) // 2])}}, {400}),
        ("bomb", {"method": "POST", "url": "/api/predict", "files": {"file": ("b.png", bomb_png(60_000, 60_000))}}, {413}),
        ("climbing run", {"method": "GET", "url": "/api/model", "params": {"run": "../../etc"}}, {404}),
        ("k out of range", {"method": "POST", "url": "/api/predict", "params": {"k": "0"}, **image}, {422}),
        ("absurd steps", {"method": "POST", "url": "/api/attack", **image, "data": {"method": "pgd", "steps": "100000"}}, {422}),
        ("absurd training", {"method": "GET", "url": "/api/playground/train",
                             "params": {"n": 2000, "epochs": 2000, "batch_size": 1}}, {400}),
        ("training", {"method": "GET", "url": "/api/playground/train", "params": {"epochs": 20}}, {200, 429}),
    ]


def resident_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--seconds", type=float, default=600)
    p.add_argument("--clients", type=int, default=8)
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))  # so that `finally` stops the servers

    from cnnlab.run import Run

    run = Run.load(args.run)
    truth = run.classes[int(run.load_data().test.y[0])]  # digit_png's image is the first test image
    png = digit_png(args.run)
    mix = requests_mix(png)
    port = free_port()
    server = start([str(Path(sys.executable).with_name("cnnlab")), "serve", args.run, "--port", str(port)], port)
    base = f"http://127.0.0.1:{port}"
    counts: Counter[tuple[str, int]] = Counter()
    wrong: list[str] = []
    memory: list[tuple[float, float]] = []
    begin = time.monotonic()
    deadline = begin + args.seconds

    def client(k: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            turn = k
            while time.monotonic() < deadline:
                name, request, expected = mix[turn % len(mix)]
                turn += 1
                try:
                    status = http.request(**request).status_code
                except httpx.HTTPError as e:
                    status = 0
                    wrong.append(f"{name}: {type(e).__name__}")
                counts[name, status] += 1
                if status and status not in expected:
                    wrong.append(f"{name}: {status}")

    try:
        threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(args.clients)]
        for t in threads:
            t.start()
        while time.monotonic() < deadline:
            memory.append((time.monotonic() - begin, resident_mb(server.pid)))
            time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
        for t in threads:
            t.join(timeout=90)
        memory.append((time.monotonic() - begin, resident_mb(server.pid)))
        with httpx.Client(base_url=base, timeout=60) as http:  # still right afterwards
            label = http.post("/api/predict", content=png, headers={"Content-Type": "image/png"}).json()["top"][0]["class"]
            explained = http.post("/api/explain", files={"file": ("d.png", png)}).status_code
    finally:
        stop(server)

    warm = next(mb for t, mb in memory if t >= args.seconds / 10)
    peak, end = max(mb for _, mb in memory), memory[-1][1]
    total = sum(counts.values())
    print(f"{total} requests in {args.seconds:.0f} s from {args.clients} clients ({total / args.seconds:.0f}/s); "
          f"unexpected answers: {len(wrong)}")
    for name, _, expected in mix:
        got = {status: n for (kind, status), n in counts.items() if kind == name}
        print(f"  {name:>16}: {got}  (expected {sorted(expected)})")
    print(f"server memory: warm {warm:.0f} MB, peak {peak:.0f} MB, end {end:.0f} MB, growth {end - warm:+.0f} MB")
    print(f"afterwards: predict says {label} (the image is a {truth}), explain answers {explained}")
    failures = wrong[:10] + ([f"memory grew {end - warm:.0f} MB"] if end - warm > MAX_GROWTH_MB else [])
    if explained != 200 or label != truth:
        failures.append(f"afterwards predict said {label} for a {truth} and explain answered {explained}")
    if failures:
        sys.exit("soak failed: " + "; ".join(failures))


if __name__ == "__main__":
    main()
