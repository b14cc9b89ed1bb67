"""`cnnlab serve` against the plainest FastAPI + torch server of the same weights, under `wrk`.

Both servers answer `POST /api/predict` with one digit PNG: the plain one (below, `plain_app`)
decodes, resizes, runs the model and returns the top 5 as JSON, one request per forward pass,
no batching and no lock, as a first FastAPI tutorial would; `cnnlab serve` micro-batches
(cnnlab/serve/batching.py). Each is started as its own process on a free loopback port, warmed
up, then loaded by `wrk` (Debian's, a C load generator: the Python httpx client of earlier
versions saturated near 300 requests/s by itself) for `--seconds`, one server at a time so
they never share the cores. cnnlab is measured twice, with the multipart upload both servers
take and with the image as the raw body (`Content-Type: image/png`), which spares the
multipart parsing. Printed: requests/s, p50 and p99 latency, non-2xx answers (must be 0), the
cnnlab server's peak memory, and cnnlab / plain.

Results: docs/benchmarks.md (2 cores, torch 2.x, LeNet-5 on the embedded digits).

    python benchmarks/serve_load.py RUN [--seconds 8] [--connections 16] [--workers 1]
    python benchmarks/serve_load.py RUN --plain --port 8001     # the plain server alone
"""

from __future__ import annotations

import argparse
import io
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from fastapi import FastAPI, UploadFile  # at the top: FastAPI resolves the endpoint's annotations here

WRK_SCRIPT = """
local f = io.open("{png}", "rb"); local png = f:read("*all"); f:close()
wrk.method = "POST"
{body}
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d seconds=%.3f p50=%.3f p99=%.3f non2xx=%d errors=%d\\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""
MULTIPART = """wrk.body = "--cnnlab\\r\\nContent-Disposition: form-data; name=\\"file\\"; filename=\\"d.png\\"\\r\\n" ..
  "Content-Type: image/png\\r\\n\\r\\n" .. png .. "\\r\\n--cnnlab--\\r\\n"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=cnnlab\""""
RAW = """wrk.body = png
wrk.headers["Content-Type"] = "image/png\""""


def plain_app(run_dir: str) -> FastAPI:
    """The plainest FastAPI + torch server of a run's weights: what `cnnlab serve` is compared with."""
    import torch
    from PIL import Image

    from cnnlab.run import Run

    run = Run.load(run_dir)  # only to rebuild the model and read its weights
    model, classes = run.model.eval(), run.classes
    c, h, w = run.input_shape
    app = FastAPI()

    @app.post("/api/predict")
    def predict(file: UploadFile) -> dict:
        image = Image.open(file.file).convert("L" if c == 1 else "RGB").resize((w, h), Image.Resampling.BILINEAR)
        x = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).float().div(255).view(1, h, w, c).permute(0, 3, 1, 2)
        with torch.inference_mode():
            probs = model(x).softmax(1)[0]
        values, indices = probs.topk(5)
        return {"top": [{"class": classes[i], "probability": v} for v, i in zip(values.tolist(), indices.tolist())]}

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def digit_png(run_dir: str) -> bytes:
    import numpy as np
    from PIL import Image

    from cnnlab.run import Run

    x = Run.load(run_dir).load_data().test.x[0]  # (C, H, W) in [0, 1]
    pixels = (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(buf, format="PNG")
    return buf.getvalue()


def start(command: list[str], port: int, deadline_s: float = 120) -> subprocess.Popen:
    """A server process, once it answers on `port` (or an error if it dies or takes too long)."""
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=5)
            return server
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"{' '.join(command)} exited: {server.communicate()[1][-2000:]}") from None
            if time.monotonic() > deadline:
                stop(server)
                raise SystemExit(f"{' '.join(command)} did not answer in {deadline_s:.0f} s") from None
            time.sleep(0.3)


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def peak_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process and its children (the workers), in MB."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    own = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return own + sum(peak_mb(int(c)) for c in children)


def wrk(port: int, script: Path, seconds: float, connections: int) -> dict[str, float]:
    """One bounded wrk run on loopback; its numbers, parsed from the script's RESULT line."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script), f"http://127.0.0.1:{port}/api/predict"],
        capture_output=True, text=True, timeout=seconds + 60, check=True,
    ).stdout
    found = re.search(r"RESULT (.*)", out)
    if not found:
        raise SystemExit(f"wrk printed no result:\n{out}")
    numbers = {k: float(v) for k, v in (pair.split("=") for pair in found.group(1).split())}
    return numbers | {"rps": numbers["requests"] / numbers["seconds"]}


def measure(name: str, command: list[str], port: int, scripts: dict[str, Path], args: argparse.Namespace) -> dict[str, dict]:
    server = start(command, port)
    try:
        results = {}
        for body, script in scripts.items():
            wrk(port, script, args.warmup, args.connections)  # first passes, allocations, caches
            results[body] = wrk(port, script, args.seconds, args.connections)
            results[body]["peak_mb"] = peak_mb(server.pid)
            r = results[body]
            print(f"{name:>6} {body:>9}: {r['rps']:7.0f} requests/s   p50 {r['p50']:6.1f} ms   p99 {r['p99']:6.1f} ms   "
                  f"non-2xx {r['non2xx']:.0f}   errors {r['errors']:.0f}   peak memory {r['peak_mb']:.0f} MB", flush=True)
        return results
    finally:
        stop(server)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--seconds", type=float, default=8, help="length of each measured wrk run")
    p.add_argument("--warmup", type=float, default=2, help="length of the unmeasured wrk run before it")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--workers", type=int, default=1, help="cnnlab serve --workers")
    p.add_argument("--plain", action="store_true", help="run the plain server only (on --port), until stopped")
    p.add_argument("--port", type=int, default=8001)
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))  # so that `finally` stops the servers

    if args.plain:
        import uvicorn

        uvicorn.run(plain_app(args.run), host="127.0.0.1", port=args.port, log_level="warning")
        return

    import torch

    print(f"POST /api/predict, one {args.run} test image; wrk -t2 -c{args.connections} -d{args.seconds:g}s on loopback; "
          f"{os.cpu_count()} cores, torch {torch.__version__}", flush=True)
    with tempfile.TemporaryDirectory(prefix="cnnlab-serve-load-") as tmp:
        png = Path(tmp) / "digit.png"
        png.write_bytes(digit_png(args.run))
        scripts = {}
        for body, lua in (("multipart", MULTIPART), ("raw", RAW)):
            scripts[body] = Path(tmp) / f"{body}.lua"
            scripts[body].write_text(WRK_SCRIPT.format(png=png, body=lua))
        port = free_port()
        plain = measure("plain", [sys.executable, __file__, args.run, "--plain", "--port", str(port)], port,
                        {"multipart": scripts["multipart"]}, args)["multipart"]
        port = free_port()
        cnnlab = measure("cnnlab", [str(Path(sys.executable).with_name("cnnlab")), "serve", args.run, "--port", str(port),
                                    "--workers", str(args.workers)], port, scripts, args)
    for body, r in cnnlab.items():
        print(f"cnnlab ({body}) / plain: {r['rps'] / plain['rps']:.2f}x requests/s, p99 {r['p99'] / plain['p99']:.2f}x")
    if any(r["non2xx"] or r["errors"] for r in [plain, *cnnlab.values()]):
        sys.exit(1)


if __name__ == "__main__":
    main()
