"""How the server says no: every error is `{"error": sentence}` with a 4xx status (503 when it
is busy), the same from an endpoint, from FastAPI's validation and from the ASGI middlewares
that answer before FastAPI sees the request (token, body size, time-out).

A sentence never carries the server's own paths (the served folder is cut from it) and a bug
is answered 500 with no exception text: the traceback goes to the server's log (uvicorn
writes it), where the person who runs the server reads it, not to whoever sent the request.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from cnnlab.errors import CnnlabError


class ServeError(CnnlabError):
    """A request the server refuses, with its HTTP status (400 unless said)."""

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


class Problem(BaseModel):
    """The body of every error answer."""

    error: str
    details: list[dict[str, Any]] | None = None


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, so a client (and schemathesis) knows them."""
    words = {
        400: "a choice or an upload the server cannot use", 401: "no valid bearer token (servers started with --token)",
        404: "no such run or page", 413: "the upload, the image or the work asked for is too large",
        415: "the body is neither multipart nor an image", 422: "a parameter out of range, or a run that cannot be served",
        429: "too many trainings at once; try again shortly", 503: "the server is busy or the request took too long",
    }
    return {s: {"model": Problem, "description": words[s]} for s in statuses}


async def answer(send, status: int, message: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:  # noqa: ANN001
    """An error answer from an ASGI middleware (below FastAPI's exception handlers)."""
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


def install(app: FastAPI, hidden: Path | None) -> None:
    """The exception handlers of `app`; `hidden` (the served folder) is cut from every sentence."""

    def scrub(text: str) -> str:
        return text.replace(f"{hidden}/", "").replace(str(hidden), "the served folder") if hidden else text

    @app.exception_handler(CnnlabError)
    def user_error(request: Request, e: CnnlabError) -> JSONResponse:
        return JSONResponse({"error": scrub(str(e))}, status_code=getattr(e, "status", 400), headers=getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Request, e: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'][1:]) or 'request'}: {err['msg']}" for err in e.errors())
        return JSONResponse({"error": f"invalid request ({problems}).", "details": _jsonable(e.errors())}, status_code=422)

    @app.exception_handler(HTTPException)
    def http_error(request: Request, e: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code, headers=e.headers)

    @app.exception_handler(Exception)
    def bug(request: Request, e: Exception) -> JSONResponse:  # Starlette re-raises e after this: uvicorn logs it
        return JSONResponse({"error": "internal error; the server's log has the details, please report it."}, status_code=500)


def _jsonable(errors: list) -> list:
    from fastapi.encoders import jsonable_encoder

    # the rejected input is echoed only in short: a 1 MB field comes back as its length
    def short(v: Any) -> Any:
        return v if not isinstance(v, str | bytes) or len(v) <= 200 else f"<{len(v)} characters>"

    return [{**err, "input": short(err.get("input"))} if "input" in err else err
            for err in jsonable_encoder(errors, custom_encoder={bytes: lambda b: f"<{len(b)} bytes>"})]
