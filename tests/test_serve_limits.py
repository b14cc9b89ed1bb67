"""Bounds on the work one client can ask of the server: absurd requests refused fast, at most
MAX_TRAININGS playground trainings at once, each stopped when its client leaves, predictions
answered while the maximum runs, a request time-out, and SIGTERM ending the server in seconds."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

from cnnlab.serve import create_app
from cnnlab.serve.limits import TimeLimit
from cnnlab.serve.playground.api import MAX_TRAININGS
from cnnlab.serve.playground.train2d import MAX_STEPS
from conftest import cnnlab_process
from test_serve_api import digit_png, free_port

# The freeze: 2,000 epochs of 1,000 points one by one, 6 x 32 neurons (2 million steps)
ABSURD = {"dataset": "spirals", "n": 2000, "epochs": 2000, "batch_size": 1, "hidden": "32,32,32,32,32,32"}
# The most work a training may ask for: MAX_STEPS steps of the widest net
MAXIMAL = {"dataset": "spirals", "n": 2000, "epochs": MAX_STEPS // 10, "batch_size": 100, "hidden": "32,32,32,32,32,32"}


@pytest.fixture(scope="module")
def client(trained_run) -> TestClient:
    return TestClient(create_app(trained_run.path))


def test_absurd_requests_are_refused_fast(client, digits) -> None:
    png, _ = digit_png(digits)
    start = time.monotonic()
    r = client.get("/api/playground/train", params=ABSURD)
    assert r.status_code == 400 and "2,000,000 steps, over the limit of 20,000" in r.json()["error"]
    for fields, status, words in [
        ({"method": "pgd", "steps": "1000000"}, 422, "steps"), ({"eps": "1e9"}, 422, "eps"), ({"eps": "nan"}, 422, "eps"),
    ]:
        r = client.post("/api/attack", files={"file": ("d.png", png)}, data=fields)
        assert r.status_code == status and words in r.json()["error"], r.text
    for params in ({"k": "100000"}, {"k": "-1"}):
        assert client.post("/api/predict", params=params, files={"file": ("d.png", png)}).status_code == 422
    assert client.get("/api/playground/data", params={"seed": 2**70}).status_code == 422
    assert time.monotonic() - start < 5


def test_work_estimated_past_the_limit_is_refused_before_it_starts(client, digits) -> None:
    png, _ = digit_png(digits)
    served = client.app.state.store.default
    measured = served.forward_seconds
    served.forward_seconds = 0.05  # as if each forward pass took 50 ms: 100 PGD steps, about 15 s of work
    try:
        r = client.post("/api/attack", files={"file": ("d.png", png)}, data={"method": "pgd", "steps": "100"})
        assert r.status_code == 413
        assert r.json()["error"].startswith("PGD with 100 steps would take about 15 s on this model") and "fewer steps" in r.json()["error"]
        assert client.post("/api/attack", files={"file": ("d.png", png)}, data={"method": "pgd", "steps": "20"}).status_code == 200
        served.forward_seconds = 20.0
        for path in ("/api/explain", "/api/features", "/api/explorer/cell"):
            assert client.post(path, files={"file": ("d.png", png)}).status_code == 413, path
    finally:
        served.forward_seconds = measured


def test_the_explorer_sends_at_most_its_number_budget(trained_run, digits) -> None:
    from cnnlab.serve.explorer import feature_maps
    from cnnlab.serve.uploads import read_upload

    x = read_upload(digit_png(digits)[0], "d.png", trained_run.input_shape)
    whole = feature_maps(trained_run.model, x)
    assert not whole["truncated"]
    cut = feature_maps(trained_run.model, x, max_numbers=10_000)
    numbers = sum(len(c["maps"]) * c["shape"][1] * c["shape"][2] for c in cut["columns"])
    assert cut["truncated"] and numbers <= 10_000 and len(cut["columns"]) < len(whole["columns"])


def test_a_request_past_the_time_limit_gets_503() -> None:
    async def slow(scope, receive, send) -> None:  # noqa: ANN001
        await asyncio.sleep(5)

    async def streamed(scope, receive, send) -> None:  # noqa: ANN001  a stream that started keeps going
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.3)
        await send({"type": "http.response.body", "body": b"done"})

    start = time.monotonic()
    r = TestClient(TimeLimit(slow, seconds=0.2)).get("/api/x")
    assert r.status_code == 503 and "limit of 0 s" in r.json()["error"] and time.monotonic() - start < 3
    assert TestClient(TimeLimit(streamed, seconds=0.1)).get("/api/x").content == b"done"


@pytest.fixture(scope="module")
def server(trained_run):
    """A real `cnnlab serve` process on a free loopback port."""
    port = free_port()
    process = cnnlab_process("serve", trained_run.path, "--port", port)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(base + "/api/runs", timeout=5)
            break
        except httpx.TransportError:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the server did not start in 120 s"
            time.sleep(0.3)
    yield base
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def train(base: str, params: dict, seconds: float, first_frame: threading.Event | None = None) -> int:
    """GET a training, read its stream for at most `seconds`, then leave; its status."""
    with httpx.stream("GET", base + "/api/playground/train", params=params, timeout=60) as r:
        if r.status_code == 200:
            start = time.monotonic()
            for _ in r.iter_bytes():
                if first_frame is not None:
                    first_frame.set()
                if time.monotonic() - start > seconds:
                    break
        return r.status_code


@pytest.mark.slow
def test_40_maximal_trainings_leave_predict_answering_within_a_second(server, digits) -> None:
    png, label = digit_png(digits)
    with httpx.Client(base_url=server, timeout=30) as http:
        with ThreadPoolExecutor(40) as pool:
            absurd = list(pool.map(lambda _: http.get("/api/playground/train", params=ABSURD).status_code, range(40)))
        assert absurd == [400] * 40
        running = threading.Event()
        with ThreadPoolExecutor(40) as pool:
            trainings = [pool.submit(train, server, MAXIMAL, 8, running) for _ in range(40)]
            assert running.wait(60)
            latencies = []
            for _ in range(10):
                start = time.monotonic()
                r = http.post("/api/predict", files={"file": ("d.png", png)})
                latencies.append(time.monotonic() - start)
                assert r.status_code == 200 and r.json()["top"][0]["class"] == str(label)
            statuses = [t.result() for t in trainings]
        assert statuses.count(200) == MAX_TRAININGS and statuses.count(429) == 40 - MAX_TRAININGS
        assert max(latencies) < 1.0, latencies
        # the clients left: their trainings stop, and new ones may start
        deadline = time.monotonic() + 20
        while (status := http.get("/api/playground/train", params={"epochs": 1}).status_code) == 429:
            assert time.monotonic() < deadline, "the abandoned trainings kept their places"
            time.sleep(0.5)
        assert status == 200


@pytest.mark.slow
def test_sigterm_stops_the_server_within_seconds_even_while_it_trains(trained_run) -> None:
    port = free_port()
    process = cnnlab_process("serve", trained_run.path, "--port", port)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(base + "/api/runs", timeout=5)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1]
                time.sleep(0.3)
        running = threading.Event()
        pool = ThreadPoolExecutor(MAX_TRAININGS)
        streams = [pool.submit(train, base, MAXIMAL, 60, running) for _ in range(MAX_TRAININGS)]
        assert running.wait(60)
        start = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        assert time.monotonic() - start < 8, "SIGTERM took too long"
        assert process.returncode in (0, -15)
        for s in streams:  # the clients see their streams cut, not hang
            with pytest.raises(httpx.RemoteProtocolError):
                s.result(timeout=30)
        pool.shutdown()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
