"""`cnnlab serve`: the inference API answers with numbers a client can rely on, refuses bad
uploads with a 4xx JSON sentence, and a real uvicorn server survives 1,000 malformed uploads."""

from __future__ import annotations

import base64
import io
import random
import socket
import struct
import time
import zlib

import httpx
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient
from PIL import Image

from cnnlab.serve import create_app
from cnnlab.serve.uploads import MAX_UPLOAD_BYTES
from conftest import cnnlab_process


def digit_png(digits, k: int = 0) -> tuple[bytes, int]:
    """The k-th test digit as PNG bytes, and its label."""
    pixels = (digits.test.x[k, 0].numpy() * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue(), int(digits.test.y[k])


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header declaring width x height gray pixels, with a few bytes of data: a
    decompression bomb's shape, without its gigabytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def client(trained_run):
    return TestClient(create_app(trained_run.path))


def test_predict_gives_the_runs_probabilities(client, trained_run, digits, tmp_path) -> None:
    png, label = digit_png(digits)
    r = client.post("/api/predict?k=3", files={"file": ("digit.png", png, "image/png")})
    assert r.status_code == 200
    doc = r.json()
    assert len(doc["top"]) == 3 and doc["top"][0]["class"] == str(label)
    (tmp_path / "digit.png").write_bytes(png)
    expected = trained_run.predict_files([tmp_path / "digit.png"], k=3)[0]["top"]
    assert [t["class"] for t in doc["top"]] == [t["class"] for t in expected]
    assert doc["top"][0]["probability"] == pytest.approx(expected[0]["probability"], abs=1e-5)
    assert sum(doc["probabilities"]) == pytest.approx(1, abs=1e-4)


def test_model_describes_the_run(client, trained_run) -> None:
    doc = client.get("/api/model").json()
    assert doc["classes"] == [str(d) for d in range(10)]
    assert doc["input_shape"] == [1, 28, 28]
    assert doc["summary"]["params"] == 61_706
    assert 0.5 < doc["test_accuracy"] <= 1
    assert client.get("/api/runs").json() == {"default": trained_run.name, "runs": [trained_run.name]}


def test_explain_returns_a_gradcam_png(client, digits) -> None:
    png, label = digit_png(digits)
    r = client.post("/api/explain", files={"file": ("d.png", png)})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-cnnlab-target"] == str(label)
    im = Image.open(io.BytesIO(r.content))
    assert im.size == (224, 224)
    assert np.asarray(im).std() > 5  # a picture, not a flat square
    other = client.post("/api/explain", files={"file": ("d.png", png)}, data={"target": "7" if label != 7 else "1"})
    assert other.status_code == 200 and other.content != r.content


def test_attack_stays_within_eps_and_lowers_the_label(client, digits) -> None:
    png, label = digit_png(digits)
    zero = client.post("/api/attack", files={"file": ("d.png", png)}, data={"eps": "0"}).json()
    assert zero["linf"] == 0 and not zero["flipped"] and zero["adversarial"][0]["class"] == str(label)
    for method in ("fgsm", "pgd"):
        doc = client.post("/api/attack", files={"file": ("d.png", png)}, data={"eps": "0.3", "method": method, "steps": "5"}).json()
        assert doc["linf"] <= 0.3 + 1e-6
        assert doc["flipped"], method  # 0.3 of the pixel range fools LeNet-5 on this digit
        assert doc["adversarial"][0]["class"] != str(label)
        adv = np.asarray(Image.open(io.BytesIO(base64.b64decode(doc["image"].split(",")[1]))))
        assert adv.shape == (112, 112)


def test_lecture_cell_is_minus_25(client) -> None:
    cell = client.get("/api/explorer/lecture/cell?i=0&j=0").json()
    assert cell["sums"] == [308, -498, 164] and cell["bias"] == 1 and cell["total"] == -25
    assert cell["window"][0] == [[0, 0, 0], [0, 156, 155], [0, 153, 154]]  # zero padding 1 around R
    example = client.get("/api/explorer/lecture").json()
    image = torch.tensor(example["image"], dtype=torch.float64)[None]
    expected = F.conv2d(image, torch.tensor([example["kernel"]], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64), padding=1)
    assert torch.equal(torch.tensor(example["output"], dtype=torch.float64), expected[0])
    for i, j in [(0, 4), (2, 3), (4, 4)]:
        assert client.get(f"/api/explorer/lecture/cell?i={i}&j={j}").json()["total"] == expected[0, 0, i, j].item()


def test_model_cell_equals_conv2d_and_features_have_lenets_shapes(client, digits) -> None:
    png, _ = digit_png(digits, 3)
    for channel, i, j in [(0, 0, 0), (2, 14, 13), (5, 27, 27)]:
        cell = client.post("/api/explorer/cell", files={"file": ("d.png", png)}, data={"channel": channel, "i": i, "j": j}).json()
        assert cell["layer"] == "net.features.conv1" and len(cell["window"][0]) == 5
        assert cell["total"] == pytest.approx(cell["conv2d"], abs=2e-3)
        assert cell["total"] == pytest.approx(sum(cell["sums"]) + cell["bias"], abs=2e-3)
    doc = client.post("/api/features", files={"file": ("d.png", png)}).json()
    shapes = {c["name"]: c["shape"] for c in doc["columns"]}
    assert shapes["net.features.conv1"] == [6, 28, 28] and shapes["net.features.pool2"] == [16, 5, 5]
    conv1 = next(c for c in doc["columns"] if c["name"] == "net.features.conv1")
    assert min(v for m in conv1["maps"] for row in m for v in row) < 0  # recorded before the in-place ReLU


@pytest.mark.parametrize(("request_args", "status", "words"), [
    ({"files": {"file": ("x.png", b"not an image at all")}}, 400, "is not an image"),
    ({"files": {"file": ("x.png", b"")}}, 400, "empty"),
    ({"files": {"file": ("x.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40)}}, 400, "x.png"),
    ({"files": {"file": ("big.png", bomb_png(50_000, 50_000))}}, 413, "decompression bomb"),
    ({"files": {"file": ("wide.png", bomb_png(2**31 - 1, 1))}}, 413, "decompression bomb"),
    ({}, 422, "file"),
    ({"files": {"file": ("x.png", b"1")}, "params": {"run": "../../etc"}}, 404, "unknown run"),
    ({"files": {"file": ("x.png", b"1")}, "params": {"k": "0"}}, 422, "k"),
])
def test_bad_requests_get_a_4xx_sentence(client, request_args, status, words) -> None:
    r = client.post("/api/predict", **request_args)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


def test_bad_choices_get_a_4xx_sentence(client, digits) -> None:
    png, _ = digit_png(digits)
    cases = [
        (client.post("/api/attack", files={"file": ("d.png", png)}, data={"eps": "2"}), 422, "eps"),
        (client.post("/api/attack", files={"file": ("d.png", png)}, data={"method": "cw"}), 422, "method"),
        (client.post("/api/explain", files={"file": ("d.png", png)}, data={"target": "cat"}), 400, "unknown class 'cat'"),
        (client.post("/api/explorer/cell", files={"file": ("d.png", png)}, data={"i": 28}), 400, "outside the 28x28 output"),
        (client.post("/api/explorer/cell", files={"file": ("d.png", png)}, data={"channel": 6}), 400, "output channels 0 to 5"),
        (client.get("/api/explorer/lecture/cell?i=5&j=0"), 400, "outside the 5x5 output"),
        (client.get("/api/model?run=nope"), 404, "unknown run 'nope'"),
        (client.get("/api/nothing"), 404, "Not Found"),
    ]
    for r, status, words in cases:
        assert r.status_code == status, r.text
        assert words in r.json()["error"], r.text


def test_oversized_bodies_are_refused_before_they_are_stored(client) -> None:
    big = b"\0" * (MAX_UPLOAD_BYTES + 2**20)
    r = client.post("/api/predict", files={"file": ("big.png", big)})
    assert r.status_code == 413 and "over" in r.json()["error"]
    head = b'--x\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n\r\n'
    body = head + big  # sent in chunks with no Content-Length: counted as it arrives
    chunked = client.post("/api/predict", content=(body[i:i + 2**20] for i in range(0, len(body), 2**20)),
                          headers={"content-type": "multipart/form-data; boundary=x"})
    assert chunked.status_code == 413


def test_openapi_lists_the_endpoints(client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/predict", "/api/explain", "/api/attack", "/api/model", "/api/playground/train"):
        assert path in paths
    assert client.get("/docs").status_code == 200
    assert "cnnlab lab" in client.get("/").text and "playground" in client.get("/playground").text


def test_serve_refuses_an_unknown_run(cli, tmp_path) -> None:
    r = cli("serve", tmp_path / "missing")
    assert r.code == 1 and "is not a cnnlab run" in r.err
    assert "127.0.0.1" in cli("serve", "--help").out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def malformed_uploads(png: bytes, count: int, seed: int = 0) -> list[bytes]:
    """Random bytes, PNGs cut inside their pixel data, PNGs with a corrupted header, and PNG
    headers declaring huge dimensions."""
    rng = random.Random(seed)
    idat = png.index(b"IDAT")
    data_end = idat + 4 + struct.unpack(">I", png[idat - 4: idat])[0]
    out = []
    for k in range(count):
        kind = k % 4
        if kind == 0:
            out.append(rng.randbytes(rng.randint(1, 2000)))
        elif kind == 1:
            out.append(png[: rng.randint(8, data_end - 5)])  # the last 4 bytes are zlib's checksum: without them every pixel is still there
        elif kind == 2:
            broken = bytearray(png)
            broken[rng.randint(16, 28)] ^= 1 << rng.randint(0, 7)  # IHDR no longer matches its CRC
            out.append(bytes(broken))
        else:
            out.append(bomb_png(rng.randint(5000, 100_000), rng.randint(5000, 100_000)))
    return out


def test_every_malformed_upload_is_refused(digits) -> None:
    from cnnlab.serve.uploads import BadUpload, read_upload

    png, _ = digit_png(digits)
    for body in malformed_uploads(png, 200, seed=1):
        with pytest.raises(BadUpload):
            read_upload(body, "m.png", (1, 28, 28))


@pytest.mark.slow
def test_real_server_survives_1000_malformed_uploads(trained_run, digits) -> None:
    port = free_port()
    server = cnnlab_process("serve", trained_run.path, "--port", port)  # default host: 127.0.0.1
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if http.get("/api/model").status_code == 200:
                        break
                except httpx.TransportError:
                    assert server.poll() is None, server.communicate()[1]
                    assert time.monotonic() < deadline, "the server did not start in 120 s"
                    time.sleep(0.3)
            png, label = digit_png(digits)
            statuses = [http.post("/api/predict", files={"file": ("m.png", body)}).status_code for body in malformed_uploads(png, 1000)]
            assert all(400 <= s < 500 for s in statuses), sorted(set(statuses))
            assert statuses.count(413) == 250  # every huge declared size refused before decoding
            r = http.post("/api/predict", files={"file": ("d.png", png)})
            assert r.status_code == 200 and r.json()["top"][0]["class"] == str(label)
        assert server.poll() is None
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert server.returncode in (0, -15)  # uvicorn stops cleanly on SIGTERM


def test_predict_takes_the_image_as_the_body_too(client, digits) -> None:
    png, label = digit_png(digits, 2)
    multipart = client.post("/api/predict", files={"file": ("d.png", png, "image/png")}).json()
    raw = client.post("/api/predict", content=png, headers={"Content-Type": "image/png"})
    assert raw.status_code == 200 and raw.json() == multipart and raw.json()["top"][0]["class"] == str(label)
    assert "seen" not in raw.json()  # the picture of the input costs a PNG encoding: only when asked
    seen = client.post("/api/predict?seen=true", content=png, headers={"Content-Type": "image/png"}).json()["seen"]
    assert Image.open(io.BytesIO(base64.b64decode(seen.split(",")[1]))).size == (112, 112)
    r = client.post("/api/predict", content=b"hello", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and "Content-Type image/png" in r.json()["error"]
    r = client.post("/api/predict", content=b"hello", headers={"Content-Type": "image/png"})
    assert r.status_code == 400 and "is not an image" in r.json()["error"]


def test_requests_arriving_together_share_forward_passes(trained_run, digits) -> None:
    import asyncio

    from cnnlab.serve.uploads import read_upload

    app = create_app(trained_run.path)
    pngs = [digit_png(digits, k)[0] for k in range(24)]

    async def together() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lab") as http:
            return await asyncio.gather(*(http.post("/api/predict", content=png, headers={"Content-Type": "image/png"})
                                          for png in pngs))

    answers = asyncio.run(together())
    batcher = app.state.store.default.predictor
    assert batcher.inputs == 24 and batcher.batches < 24  # some passes served several requests
    for png, answer in zip(pngs, answers):  # and each request got its own image's row back
        expected = trained_run.predict(read_upload(png, "d.png", trained_run.input_shape))[0].tolist()
        assert answer.json()["probabilities"] == pytest.approx(expected, abs=2e-6)
