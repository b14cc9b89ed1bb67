"""schemathesis against the server's own OpenAPI schema: every endpoint, requests generated
from the schema (valid and invalid), each answer checked: never a 5xx, only documented status
codes and content types, bodies that match the documented schema, invalid requests refused,
and valid ones never refused as invalid (422: the schema and the server disagree).

A bounded number of examples per endpoint runs in the normal suite; the slow test runs more.
(Each endpoint is its own pytest case, hypothesis drawing from schemathesis's strategies:
schemathesis's own pytest loader does not run under pytest 9.)
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from cnnlab.serve import create_app

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection, positive_data_acceptance]
# A valid request may still be refused for what the schema cannot say: bytes that are not an
# image (400), an image or a training too large (413), a busy model (503). Never 422.
ACCEPTED = ["2xx", "400", "404", "413", "429", "503"]


@pytest.fixture(scope="module")
def app(trained_run, tmp_path_factory):
    import shutil

    from cnnlab.serve.playground import train2d

    folder = tmp_path_factory.mktemp("schema-runs")
    shutil.copytree(trained_run.path, folder / trained_run.name)
    saved = train2d.MAX_STEPS
    train2d.MAX_STEPS = 300  # the fuzzer's trainings stay short; the bound itself is tested in test_serve_limits.py
    yield create_app(folder / trained_run.name)
    train2d.MAX_STEPS = saved


@pytest.fixture(scope="module")
def web_schema(app):
    config = SchemathesisConfig.from_dict({"checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}}})
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


# Every operation of the schema, read from a server without a run (the same routes): a new
# endpoint is fuzzed without anyone listing it here. Invalid requests only where there is a
# parameter or a body to get wrong.
SCHEMA = create_app(None).openapi()["paths"]
OPERATIONS = [
    pytest.param(method.upper(), path, mode, id=f"{method.upper()} {path} {mode}")
    for path, ops in SCHEMA.items() for method, op in ops.items()
    for mode in ("positive", "negative") if mode == "positive" or op.get("parameters") or op.get("requestBody")
]


def send(client: TestClient, case) -> httpx.Response:  # noqa: ANN001
    """The case's request through httpx (FastAPI's TestClient). schemathesis's own transport
    goes through requests, whose urllib3 1.26 here (torchattacks pins requests~=2.25) cannot
    read a server-sent event stream."""
    request = case.as_transport_kwargs(base_url=str(client.base_url))
    client.cookies = request.pop("cookies", None) or {}
    body = request.pop("data", None)
    if isinstance(body, bytes | str):
        request["content"] = body
    elif body is not None:
        request["data"] = body
    if request.get("files") is None:
        request.pop("files", None)
    else:  # requests sends a number in a form field as its text; httpx wants the text
        request["files"] = [(name, (part[0], part[1] if isinstance(part[1], bytes | str) else str(part[1]), *part[2:]))
                             for name, part in request["files"]]
    response = client.request(**request)
    response.request.read()  # a multipart body is streamed; the checks read it again
    return response


def fuzz(app, web_schema, method: str, path: str, mode: str, examples: int, derandomize: bool = True) -> None:
    """`examples` generated requests to one operation, each answer checked against the schema."""
    operation = web_schema[path][method]
    client = TestClient(app)

    @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck),
              derandomize=derandomize, database=None)
    def check(case) -> None:  # noqa: ANN001
        case.validate_response(send(client, case), checks=CHECKS)

    check()


@pytest.mark.parametrize(("method", "path", "mode"), OPERATIONS)
def test_every_endpoint_answers_as_documented(app, web_schema, method, path, mode) -> None:
    fuzz(app, web_schema, method, path, mode, examples=25)


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path", "mode"), OPERATIONS)
def test_every_endpoint_answers_as_documented_at_length(app, web_schema, method, path, mode) -> None:
    fuzz(app, web_schema, method, path, mode, examples=100, derandomize=False)


def test_the_schema_documents_every_error_status(app) -> None:
    paths = TestClient(app).get("/openapi.json").json()["paths"]
    for path, operations in paths.items():
        for operation in operations.values():
            assert {"400", "422"} <= operation["responses"].keys(), path
    for path in ("/api/predict", "/api/explain", "/api/attack", "/api/features", "/api/explorer/cell"):
        assert {"404", "413", "503"} <= paths[path]["post"]["responses"].keys(), path
    assert set(paths["/api/predict"]["post"]["requestBody"]["content"]) >= {"multipart/form-data", "image/png"}
    assert "429" in paths["/api/playground/train"]["get"]["responses"]
