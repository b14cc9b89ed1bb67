"""A bounded load on `cnnlab serve` over loopback: 16 concurrent clients, a fixed number of
POST /api/predict requests (one digit PNG each), against a real server process.

Printed: requests/s, p50 and p99 latency, errors (must be 0), the server's peak resident
memory (VmHWM), and the peer measured in the same run: the same predictions in-process with
`Run.predict` on one image at a time, no HTTP. The ratio server / in-process says what HTTP,
multipart parsing and PNG decoding cost per image. Results: docs/benchmarks.md.

    python benchmarks/serve_load.py RUN [--requests 1000] [--clients 16]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def digit_pngs(run, count: int) -> list[bytes]:  # noqa: ANN001
    x = run.load_data().test.x[:count]
    out = []
    for img in x:
        buf = io.BytesIO()
        Image.fromarray((img[0].numpy() * 255).round().astype(np.uint8)).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


async def load(base: str, pngs: list[bytes], requests: int, clients: int) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    queue = iter(range(requests))

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        for k in queue:  # the shared iterator hands each request number to one client
            start = time.perf_counter()
            r = await http.post("/api/predict", files={"file": ("d.png", pngs[k % len(pngs)], "image/png")})
            latencies.append(time.perf_counter() - start)
            errors += r.status_code != 200

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return latencies, errors, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--clients", type=int, default=16)
    args = p.parse_args()

    from cnnlab.data.images import read_image
    from cnnlab.run import Run

    run = Run.load(args.run)
    pngs = digit_pngs(run, 100)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("cnnlab")
    server = subprocess.Popen([str(exe), "serve", args.run, "--port", str(port)], stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                httpx.get(base + "/api/model", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        latencies, errors, seconds = asyncio.run(load(base, pngs, args.requests, args.clients))
        peak_mb = next(int(line.split()[1]) for line in Path(f"/proc/{server.pid}/status").read_text().splitlines()
                       if line.startswith("VmHWM")) / 1024
    finally:
        server.terminate()
        server.wait()

    # The peer: the same images decoded and predicted in this process, one at a time.
    tmp = Path(f"/tmp/serve-load-{port}.png")
    start = time.perf_counter()
    for k in range(args.requests):
        tmp.write_bytes(pngs[k % len(pngs)])
        run.predict(read_image(tmp, 1, run.input_shape[1:]))
    direct = args.requests / (time.perf_counter() - start)
    tmp.unlink()

    ms = sorted(v * 1000 for v in latencies)
    rps = args.requests / seconds
    print(f"{args.requests} requests, {args.clients} clients: {rps:.0f} requests/s, p50 {statistics.median(ms):.1f} ms, "
          f"p99 {ms[int(0.99 * (len(ms) - 1))]:.1f} ms, errors {errors}, server peak memory {peak_mb:.0f} MB")
    print(f"in-process Run.predict, one image at a time: {direct:.0f} images/s; server / in-process = {rps / direct:.2f}")
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
