"""The inference API of one run: what the model is, what it predicts, why (Grad-CAM), and how
little noise changes its mind (FGSM / PGD). Images are uploads in the multipart field `file`
(predict also takes the image as the whole body), converted to the run's input shape; every
error is a JSON `{"error": sentence}`.

Predict is the hot path: its endpoint decodes a small upload on the event loop (0.1 ms, less
than a hop to a thread) and awaits its row of a micro-batched forward pass (batching.py); its
JSON is written directly, not through FastAPI's encoder. The analyses (explain, attack, the
explorer) run in worker threads on the run's analysis copy, one at a time (runs.py), each
refused up front when its estimated work passes the limit (limits.py).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote

import anyio
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from cnnlab.serve.answers import ServeError, documented
from cnnlab.serve.limits import BACKWARD, LOCK_SECONDS, busy, check_work
from cnnlab.serve.pictures import data_url, heatmap_png, png
from cnnlab.serve.runs import Served
from cnnlab.serve.uploads import MAX_UPLOAD_BYTES, image_size, read_upload, request_image

T = TypeVar("T")
router = APIRouter(prefix="/api", responses=documented(400, 404, 422, 503))
UPLOADS = documented(413, 415)

RunName = Annotated[str | None, Query(max_length=255, description="a run in the same folder as the served one; default: the served run")]
ImageFile = Annotated[UploadFile, File(description="an image (PNG, JPEG, ...); converted to the run's input shape")]
INLINE_PIXELS = 256 * 256  # decoded on the event loop up to here (0.1 ms for a digit); larger images in a thread
ANALYSES_QUEUED = 16  # analyses computing or waiting for their model at once; more get 503 at once, not a thread each
_analyses = threading.BoundedSemaphore(ANALYSES_QUEUED)

IMAGE_BODY: dict[str, Any] = {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "the image (PNG, JPEG, ...)"}}}},
    **{kind: {"schema": {"type": "string", "format": "binary"}} for kind in ("image/png", "image/jpeg", "application/octet-stream")},
}}


class Ranked(BaseModel):
    class_: str = Field(alias="class")
    index: int
    probability: float


class Prediction(BaseModel):
    run: str
    top: list[Ranked]
    probabilities: list[float] = Field(description="one per class, in the order of `classes`")
    classes: list[str]
    seen: str | None = Field(None, description="with ?seen=true: the input as the model saw it, a PNG data URL")


class Attack(BaseModel):
    run: str
    eps: float
    method: str
    label: str
    clean: list[Ranked]
    adversarial: list[Ranked]
    flipped: bool
    linf: float
    image: str
    noise: str


def _store(request: Request):  # noqa: ANN202
    store = request.app.state.store
    if store is None:
        raise ServeError("no run is served here; start the server with `cnnlab serve RUN`.", 404)
    return store


async def served_run(request: Request, name: str | None) -> Served:
    store = _store(request)
    if not name or name == store.default.name:
        return store.default
    return await run_in_threadpool(store.get, name)  # a sibling not yet open is loaded off the event loop


async def on_analysis_copy(served: Served, work: Callable[[], T]) -> T:
    """`work()` on the run's analysis copy, holding its lock, in a worker thread. A time-out
    stops the wait, not the computation (already bounded by check_work), which keeps its
    place among the ANALYSES_QUEUED until it ends."""
    if not _analyses.acquire(blocking=False):
        raise busy("analysis")

    def locked() -> T:
        try:
            if not served.lock.acquire(timeout=LOCK_SECONDS):
                raise busy("analysis")
            try:
                return work()
            finally:
                served.lock.release()
        finally:
            _analyses.release()

    return await anyio.to_thread.run_sync(locked, abandon_on_cancel=True)


def _top(served: Served, probs: list[float], order: list[int], k: int) -> list[dict[str, Any]]:
    classes = served.run.classes
    return [{"class": classes[i], "index": i, "probability": round(probs[i], 6)} for i in order[:k]]


def _ranked(served: Served, probs, k: int) -> list[dict[str, Any]]:  # noqa: ANN001
    values = probs.tolist()
    return _top(served, values, probs.argsort(descending=True).tolist(), k)


def _scale(served: Served) -> int:
    """Pictures of the input are about 112 pixels across: a 28x28 digit at 4x, a 224 image at 1x."""
    return max(1, 112 // served.run.input_shape[1])


def _target(served: Served, target: str | None, probs) -> int:  # noqa: ANN001
    classes = served.run.classes
    if target is None or target == "":
        return int(probs.argmax())
    if target in classes:
        return classes.index(target)
    if target.isdigit() and int(target) < len(classes):
        return int(target)
    raise ServeError(f"unknown class '{target}'; classes of this run: {', '.join(classes)}.")


@router.get("/runs", summary="The runs this server can answer for")
def runs(request: Request) -> dict[str, Any]:
    store = request.app.state.store
    return {"default": store.default.name if store else None, "runs": store.names() if store else []}


@router.get("/model", summary="The served model: summary, classes, input shape")
async def model(request: Request, run: RunName = None) -> dict[str, Any]:
    served = await served_run(request, run)
    if served.description is None:
        served.description = await on_analysis_copy(served, partial(_describe, served))
    return served.description


def _describe(served: Served) -> dict[str, Any]:
    from cnnlab.summary import summarize

    r = served.run
    return {
        "run": r.name, "task": served.task, "model": r.config.model, "data": r.config.data, "classes": r.classes,
        "input_shape": list(r.input_shape), "summary": summarize(served.analysis, r.input_shape, r.config.model).to_dict(),
        "test_accuracy": served.test_accuracy,
    }


@router.post("/predict", summary="Top-k classes of an uploaded image", response_model=Prediction,
             responses=UPLOADS, openapi_extra={"requestBody": IMAGE_BODY})
async def predict(
    request: Request, k: Annotated[int, Query(ge=1, le=1000)] = 5, run: RunName = None,
    seen: Annotated[bool, Query(description="also return the input as the model saw it (a PNG)")] = False,
) -> Response:
    """The image is the multipart field `file`, or the whole body with an image Content-Type.
    Requests that arrive together share one forward pass (micro-batching)."""
    served = await served_run(request, run)
    served.require_classifier("/api/predict")
    data, name = await request_image(request)
    width, height = image_size(data, name)
    if width * height <= INLINE_PIXELS:
        x = read_upload(data, name, served.run.input_shape)
    else:
        x = await run_in_threadpool(read_upload, data, name, served.run.input_shape)
    probs, order = await served.predictor(x)
    doc: dict[str, Any] = {
        "run": served.name, "top": _top(served, probs, order, k),
        "probabilities": [round(p, 6) for p in probs], "classes": served.run.classes,
    }
    if seen:
        doc["seen"] = data_url(png(x[0], scale=_scale(served)))
    return Response(json.dumps(doc), media_type="application/json")


@router.post("/explain", summary="Grad-CAM heatmap (PNG) of an uploaded image",
             response_class=Response, responses={200: {"content": {"image/png": {}}}, **UPLOADS})
async def explain(
    request: Request, file: ImageFile,
    target: Annotated[str | None, Form(max_length=255, description="class name or index; default: the predicted class")] = None,
    run: RunName = None,
) -> Response:
    """Grad-CAM (Selvaraju et al. 2017) at the last convolution, laid over the image. The class
    explained is in the `X-Cnnlab-Target` header, percent-encoded (UTF-8)."""
    from cnnlab.explain import attribute

    served = await served_run(request, run)
    served.require_classifier("/api/explain")
    check_work(2 + BACKWARD, served.forward_seconds, "Grad-CAM", "this model is too slow to explain on this server")
    data = await file.read(MAX_UPLOAD_BYTES + 1)

    def work() -> tuple[bytes, int]:
        import torch

        x = read_upload(data, file.filename or "the upload", served.run.input_shape)
        probs = served.probabilities(x)
        t = _target(served, target, probs)
        heat = attribute(served.analysis, x, torch.tensor([t]), "gradcam")  # (1, C, H, W)
        return heatmap_png(x[0], heat[0].mean(0), scale=max(1, 224 // served.run.input_shape[1])), t

    body, t = await on_analysis_copy(served, work)
    # percent-encoded: a header is Latin-1 text on one line, a class name may be anything
    return Response(body, media_type="image/png", headers={"X-Cnnlab-Target": quote(served.run.classes[t], safe="")})


@router.post("/attack", summary="An adversarial version of an uploaded image and its prediction",
             response_model=Attack, responses=UPLOADS)
async def attack(
    request: Request, file: ImageFile,
    eps: Annotated[float, Form(ge=0, le=1, description="L-inf radius in pixels in [0, 1]")] = 0.1,
    method: Annotated[Literal["fgsm", "pgd"], Form()] = "fgsm",
    steps: Annotated[int, Form(ge=1, le=100, description="PGD steps")] = 10,
    k: Annotated[int, Query(ge=1, le=1000)] = 3,
    run: RunName = None,
) -> dict[str, Any]:
    """FGSM (Goodfellow et al. 2015) or PGD (Madry et al. 2018), pushing away from the class
    the model predicts on the clean image."""
    from cnnlab.attack import fgsm, pgd

    served = await served_run(request, run)
    served.require_classifier("/api/attack")
    passes = 2 + (1 if method == "fgsm" else steps) * (1 + BACKWARD)
    check_work(passes, served.forward_seconds, f"{method.upper()} with {steps} steps" if method == "pgd" else "FGSM",
               "choose fewer steps" if method == "pgd" else "this model is too slow to attack on this server")
    data = await file.read(MAX_UPLOAD_BYTES + 1)

    def work() -> dict[str, Any]:
        x = read_upload(data, file.filename or "the upload", served.run.input_shape)
        clean = served.probabilities(x)
        y = clean.argmax().view(1)
        x_adv = fgsm(served.analysis, x, y, eps) if method == "fgsm" else pgd(served.analysis, x, y, eps, steps=steps)
        adv = served.probabilities(x_adv)
        scale = _scale(served)
        return {
            "run": served.name, "eps": eps, "method": method, "label": served.run.classes[int(y)],
            "clean": _ranked(served, clean, k), "adversarial": _ranked(served, adv, k),
            "flipped": int(adv.argmax()) != int(y), "linf": round(float((x_adv - x).abs().max()), 6),
            "image": data_url(png(x_adv[0], scale=scale)),
            "noise": data_url(png((x_adv - x)[0] / (2 * max(eps, 1e-12)) + 0.5, scale=scale)),  # gray = 0, white = +eps
        }

    return await on_analysis_copy(served, work)


@router.post("/features", summary="Feature maps of every layer for an uploaded image (the explorer's columns)",
             responses=UPLOADS)
async def features(request: Request, file: ImageFile, run: RunName = None) -> dict[str, Any]:
    from cnnlab.serve.explorer import feature_maps

    served = await served_run(request, run)
    check_work(1, served.forward_seconds, "the explorer", "this model is too slow to explore on this server")
    data = await file.read(MAX_UPLOAD_BYTES + 1)

    def work() -> dict[str, Any]:
        x = read_upload(data, file.filename or "the upload", served.run.input_shape)
        return {"run": served.name, "classes": served.run.classes, **feature_maps(served.analysis, x)}

    return await on_analysis_copy(served, work)


@router.post("/explorer/cell", summary="One output cell of the first convolution, worked by hand", responses=UPLOADS)
async def cell(
    request: Request, file: ImageFile,
    channel: Annotated[int, Form(ge=0, le=100_000)] = 0,
    i: Annotated[int, Form(ge=-100_000, le=100_000)] = 0, j: Annotated[int, Form(ge=-100_000, le=100_000)] = 0,
    run: RunName = None,
) -> dict[str, Any]:
    from cnnlab.serve.explorer import model_cell

    served = await served_run(request, run)
    check_work(1, served.forward_seconds, "the explorer", "this model is too slow to explore on this server")
    data = await file.read(MAX_UPLOAD_BYTES + 1)

    def work() -> dict[str, Any]:
        x = read_upload(data, file.filename or "the upload", served.run.input_shape)
        return model_cell(served.analysis, x, channel, i, j)

    return await on_analysis_copy(served, work)


@router.get("/explorer/lecture", summary="The lecture's worked convolution: image, kernels, bias, output map")
def lecture() -> dict[str, Any]:
    from cnnlab.serve.explorer import lecture_example

    return lecture_example()


@router.get("/explorer/lecture/cell", summary="One cell of the lecture's convolution, worked by hand (0,0 gives -25)")
def lecture_cell(i: Annotated[int, Query(ge=-1000, le=1000)] = 0, j: Annotated[int, Query(ge=-1000, le=1000)] = 0) -> dict[str, Any]:
    from cnnlab.serve.explorer import lecture_cell as work

    return work(i, j)
