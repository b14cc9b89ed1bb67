"""Who may call the server: loopback only without a token, a bearer token on every /api call
with one, CORS off unless asked; and `serve` refusing a busy port before printing its URL."""

from __future__ import annotations

import socket

import pytest
from fastapi.testclient import TestClient

from cnnlab.serve import create_app
from cnnlab.serve.access import is_loopback
from test_serve_api import digit_png

TOKEN = "correct-horse-battery-staple"  # 28 characters


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("example.org", False),
])
def test_loopback_is_told_apart_from_the_network(host, loopback) -> None:
    assert is_loopback(host) is loopback


def test_a_host_beyond_loopback_refuses_to_start_without_a_token(cli, trained_run, monkeypatch) -> None:
    monkeypatch.delenv("CNNLAB_TOKEN", raising=False)
    for host in ("0.0.0.0", "::"):
        r = cli("serve", trained_run.path, "--host", host)
        assert r.code == 1, r.out
        assert r.err.startswith("error: ") and r.err.count("\n") == 1 and "--token" in r.err
        assert "http://" not in r.out  # nothing announced: nothing listens
    r = cli("playground", "--host", "0.0.0.0")
    assert r.code == 1 and "--token" in r.err


def test_a_short_token_is_refused(cli, trained_run, monkeypatch) -> None:
    monkeypatch.setenv("CNNLAB_TOKEN", "secret")
    r = cli("serve", trained_run.path, "--host", "0.0.0.0")
    assert r.code == 1 and "at least 16" in r.err and r.err.count("\n") == 1


@pytest.fixture(scope="module")
def locked(trained_run) -> TestClient:
    return TestClient(create_app(trained_run.path, token=TOKEN))


def test_with_a_token_every_api_call_needs_it(locked, digits) -> None:
    png, label = digit_png(digits)
    calls = [("GET", "/api/runs", {}), ("GET", "/api/model", {}), ("GET", "/api/playground/options", {}),
             ("POST", "/api/predict", {"files": {"file": ("d.png", png)}}), ("GET", "/api/nothing", {})]
    for method, path, body in calls:
        for headers in ({}, {"Authorization": "Bearer wrong-token-of-enough-length"}, {"Authorization": TOKEN}):
            r = locked.request(method, path, headers=headers, **body)
            assert r.status_code == 401, (path, headers)
            assert r.headers["www-authenticate"] == "Bearer" and "token" in r.json()["error"]
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert locked.get("/api/runs", headers=good).status_code == 200
    r = locked.post("/api/predict", files={"file": ("d.png", png)}, headers=good)
    assert r.status_code == 200 and r.json()["top"][0]["class"] == str(label)


def test_pages_and_the_schema_stay_readable_and_document_the_token(locked) -> None:
    assert locked.get("/").status_code == 200 and locked.get("/static/common.js").status_code == 200
    schema = locked.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert all("401" in op["responses"] for ops in schema["paths"].values() for op in ops.values())


def test_cors_is_off_unless_an_origin_is_given(trained_run) -> None:
    plain = TestClient(create_app(trained_run.path))
    r = plain.get("/api/runs", headers={"Origin": "https://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    preflight = {"Origin": "https://lab.example.org", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization"}
    assert "access-control-allow-origin" not in plain.options("/api/predict", headers=preflight).headers

    opened = TestClient(create_app(trained_run.path, token=TOKEN, cors=["https://lab.example.org"]))
    r = opened.options("/api/predict", headers=preflight)  # a preflight carries no token
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://lab.example.org"
    r = opened.get("/api/runs", headers={"Origin": "https://lab.example.org", "Authorization": f"Bearer {TOKEN}"})
    assert r.headers["access-control-allow-origin"] == "https://lab.example.org"
    r = opened.get("/api/runs", headers={"Origin": "https://evil.example", "Authorization": f"Bearer {TOKEN}"})
    assert "access-control-allow-origin" not in r.headers


def test_serve_on_a_busy_port_says_so_before_announcing_anything(cli, trained_run) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = cli("serve", trained_run.path, "--port", port)
    assert r.code == 1
    assert f"port {port} on 127.0.0.1 is already in use" in r.err and r.err.count("\n") == 1
    assert "http://" not in r.out
