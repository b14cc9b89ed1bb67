"""The FastAPI app: the lab page at `/`, the playground at `/playground`, the API under
`/api`, OpenAPI at `/docs`. Every error a client can cause is answered `{"error": sentence}`
with a 4xx status (answers.py); nothing a request sends can stop the server.

Around the API, outermost first: CORS (only with `cors` origins), the bearer token (only with
`token`, access.py), the body limit (uploads.py), the request time-out (limits.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse

STATIC = Path(__file__).parent / "static"


def create_app(
    run_dir: str | Path | None, *, token: str | None = None, cors: Sequence[str] = (), request_seconds: float | None = None,
) -> FastAPI:
    """The server for the run at `run_dir` (and its sibling runs); None serves only the
    playground. A missing or broken run raises CnnlabError here, before anything listens.
    `token`: every /api request must send `Authorization: Bearer <token>`; `cors`: origins
    whose pages may call the API (none by default); `request_seconds`: the time-out."""
    from fastapi.middleware.cors import CORSMiddleware
    from fastapi.staticfiles import StaticFiles

    from cnnlab import __version__
    from cnnlab.serve import answers, lab_api, quiz, task_api
    from cnnlab.serve.access import BearerToken
    from cnnlab.serve.limits import REQUEST_SECONDS, TimeLimit
    from cnnlab.serve.playground import api as playground_api
    from cnnlab.serve.runs import RunStore
    from cnnlab.serve.uploads import BodyLimit

    store = RunStore(run_dir) if run_dir is not None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.trainings.stop_all()  # SIGTERM: trainings end at their next step, not at their last epoch
        if store is not None:
            store.close()

    app = FastAPI(
        title="cnnlab", version=__version__, lifespan=lifespan,
        description="A trained cnnlab run over HTTP: predict, explain (Grad-CAM), attack (FGSM/PGD), explore its "
        "feature maps; detect (boxes) or segment (a class per pixel) for runs of those tasks; and a playground "
        "that trains small networks on 2-D data. Images are uploads in the multipart field `file` (predict, "
        "detect and segment also take the image as the whole body, `Content-Type: image/png`); "
        "errors are `{\"error\": sentence}`.",
    )
    app.state.store = store
    app.state.trainings = playground_api.Trainings()
    app.include_router(lab_api.router)
    app.include_router(task_api.router)
    app.include_router(quiz.router)
    app.include_router(playground_api.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    answers.install(app, store.root if store is not None else None)
    app.add_middleware(TimeLimit, seconds=request_seconds or REQUEST_SECONDS)
    app.add_middleware(BodyLimit)
    if token is not None:
        app.add_middleware(BearerToken, token=token)
        app.openapi = lambda: _with_bearer(FastAPI.openapi(app))  # type: ignore[method-assign]
    if cors:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], expose_headers=["X-Cnnlab-Target"])

    @app.get("/", include_in_schema=False)
    def lab_page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/quiz", include_in_schema=False)
    def quiz_page() -> FileResponse:
        return FileResponse(STATIC / "quiz.html")

    @app.get("/playground", include_in_schema=False)
    def playground_page() -> FileResponse:
        return FileResponse(STATIC / "playground.html")

    return app


def _with_bearer(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI schema of a server started with a token: every operation needs it and may answer 401."""
    from cnnlab.serve.answers import documented

    if "bearer" not in schema.get("components", {}).get("securitySchemes", {}):
        schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
        schema["security"] = [{"bearer": []}]
        for operations in schema["paths"].values():
            for operation in operations.values():
                operation["responses"]["401"] = {"description": documented(401)[401]["description"],
                                                 "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    return schema
