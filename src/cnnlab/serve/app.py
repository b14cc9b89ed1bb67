"""The FastAPI app: the lab page at `/`, the playground at `/playground`, the API under
`/api`, OpenAPI at `/docs`. Every error a client can cause is answered `{"error": sentence}`
with a 4xx status; nothing a request sends can stop the server.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from cnnlab.errors import CnnlabError

STATIC = Path(__file__).parent / "static"


def create_app(run_dir: str | Path | None) -> FastAPI:
    """The server for the run at `run_dir` (and its sibling runs); None serves only the
    playground. A missing or broken run raises CnnlabError here, before anything listens."""
    from cnnlab import __version__
    from cnnlab.serve import lab_api
    from cnnlab.serve.playground import api as playground_api
    from cnnlab.serve.runs import RunStore
    from cnnlab.serve.uploads import BodyLimit

    app = FastAPI(
        title="cnnlab", version=__version__,
        description="A trained cnnlab run over HTTP: predict, explain (Grad-CAM), attack (FGSM/PGD), explore its "
        "feature maps; and a playground that trains small networks on 2-D data. Images are uploads in the "
        "multipart field `file`; errors are `{\"error\": sentence}`.",
    )
    app.state.store = RunStore(run_dir) if run_dir is not None else None
    app.include_router(lab_api.router)
    app.include_router(playground_api.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(BodyLimit)

    @app.get("/", include_in_schema=False)
    def lab_page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/playground", include_in_schema=False)
    def playground_page() -> FileResponse:
        return FileResponse(STATIC / "playground.html")

    @app.exception_handler(CnnlabError)
    def user_error(request: Request, e: CnnlabError) -> JSONResponse:
        from cnnlab.serve.runs import UnknownRun

        status = getattr(e, "status", 404 if isinstance(e, UnknownRun) else 400)
        return JSONResponse({"error": str(e)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Request, e: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'][1:]) or 'request'}: {err['msg']}" for err in e.errors())
        return JSONResponse({"error": f"invalid request ({problems}).", "details": jsonable(e.errors())}, status_code=422)

    @app.exception_handler(HTTPException)
    def http_error(request: Request, e: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code, headers=e.headers)

    @app.exception_handler(Exception)
    def bug(request: Request, e: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error ({type(e).__name__}: {e}); please report it."}, status_code=500)

    return app


def jsonable(errors: list) -> list:
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(errors, custom_encoder={bytes: lambda b: f"<{len(b)} bytes>"})
