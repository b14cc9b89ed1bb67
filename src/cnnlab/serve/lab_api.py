"""The inference API of one run: what the model is, what it predicts, why (Grad-CAM), and how
little noise changes its mind (FGSM / PGD). Every image is an upload in the multipart field
`file`, converted to the run's input shape; every error is a JSON `{"error": sentence}`.

Endpoints are plain `def`s: FastAPI runs them in its thread pool, so a slow attack never
blocks the event loop, and each run's lock keeps two requests off the same model's hooks.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response

from cnnlab.errors import CnnlabError
from cnnlab.serve.pictures import data_url, heatmap_png, png
from cnnlab.serve.uploads import MAX_UPLOAD_BYTES, read_upload

router = APIRouter(prefix="/api")

RunName = Annotated[str | None, Query(description="a run in the same folder as the served one; default: the served run")]
ImageFile = Annotated[UploadFile, File(description="an image (PNG, JPEG, ...); converted to the run's input shape")]


def _run(request: Request, name: str | None):  # noqa: ANN202
    store = request.app.state.store
    if store is None:
        raise CnnlabError("no run is served here; start the server with `cnnlab serve RUN`.")
    return store.get(name)


def _pixels(run, file: UploadFile) -> torch.Tensor:  # noqa: ANN001
    data = file.file.read(MAX_UPLOAD_BYTES + 1)
    return read_upload(data, file.filename or "the upload", run.input_shape)


def _top(run, probs: torch.Tensor, k: int) -> list[dict[str, Any]]:  # noqa: ANN001
    values, indices = probs.topk(min(k, len(probs)))
    return [{"class": run.classes[i], "index": i, "probability": round(v, 6)} for v, i in zip(values.tolist(), indices.tolist())]


def _target(run, target: str | None, probs: torch.Tensor) -> int:  # noqa: ANN001
    if target is None or target == "":
        return int(probs.argmax())
    if target in run.classes:
        return run.classes.index(target)
    if target.isdigit() and int(target) < len(run.classes):
        return int(target)
    raise CnnlabError(f"unknown class '{target}'; classes of this run: {', '.join(run.classes)}.")


@router.get("/runs", summary="The runs this server can answer for")
def runs(request: Request) -> dict[str, Any]:
    store = request.app.state.store
    return {"default": store.default.name if store else None, "runs": store.names() if store else []}


@router.get("/model", summary="The served model: summary, classes, input shape")
def model(request: Request, run: RunName = None) -> dict[str, Any]:
    from cnnlab.summary import summarize

    r, lock = _run(request, run)
    with lock:
        summary = summarize(r.model, r.input_shape, r.config.model).to_dict()
    test = r.test_result()
    return {
        "run": r.name, "model": r.config.model, "data": r.config.data, "classes": r.classes,
        "input_shape": list(r.input_shape), "summary": summary, "test_accuracy": test["test_acc"] if test else None,
    }


@router.post("/predict", summary="Top-k classes of an uploaded image")
def predict(request: Request, file: ImageFile, k: Annotated[int, Query(ge=1, le=1000)] = 5, run: RunName = None) -> dict[str, Any]:
    r, lock = _run(request, run)
    x = _pixels(r, file)  # (1, C, H, W)
    with lock:
        probs = r.predict(x)[0]
    return {
        "run": r.name, "top": _top(r, probs, k), "probabilities": [round(p, 6) for p in probs.tolist()],
        "classes": r.classes, "seen": data_url(png(x[0], scale=4)),  # what the model was given
    }


@router.post("/explain", summary="Grad-CAM heatmap (PNG) of an uploaded image",
             response_class=Response, responses={200: {"content": {"image/png": {}}}})
def explain(
    request: Request, file: ImageFile,
    target: Annotated[str | None, Form(description="class name or index; default: the predicted class")] = None,
    run: RunName = None,
) -> Response:
    """Grad-CAM (Selvaraju et al. 2017) at the last convolution, laid over the image. The class
    explained is in the `X-Cnnlab-Target` header."""
    from cnnlab.explain import attribute

    r, lock = _run(request, run)
    x = _pixels(r, file)
    with lock:
        probs = r.predict(x)[0]
        t = _target(r, target, probs)
        heat = attribute(r.model, x, torch.tensor([t]), "gradcam")  # (1, C, H, W)
    body = heatmap_png(x[0], heat[0].mean(0), scale=max(1, 224 // r.input_shape[1]))
    return Response(body, media_type="image/png", headers={"X-Cnnlab-Target": r.classes[t]})


@router.post("/attack", summary="An adversarial version of an uploaded image and its prediction")
def attack(
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

    r, lock = _run(request, run)
    x = _pixels(r, file)
    with lock:
        clean = r.predict(x)[0]
        y = clean.argmax().view(1)
        x_adv = fgsm(r.model, x, y, eps) if method == "fgsm" else pgd(r.model, x, y, eps, steps=steps)
        adv = r.predict(x_adv)[0]
    return {
        "run": r.name, "eps": eps, "method": method, "label": r.classes[int(y)],
        "clean": _top(r, clean, k), "adversarial": _top(r, adv, k),
        "flipped": int(adv.argmax()) != int(y), "linf": round(float((x_adv - x).abs().max()), 6),
        "image": data_url(png(x_adv[0], scale=4)),
        "noise": data_url(png((x_adv - x)[0] / (2 * max(eps, 1e-12)) + 0.5, scale=4)),  # gray = 0, white = +eps
    }


@router.post("/features", summary="Feature maps of every layer for an uploaded image (the explorer's columns)")
def features(request: Request, file: ImageFile, run: RunName = None) -> dict[str, Any]:
    from cnnlab.serve.explorer import feature_maps

    r, lock = _run(request, run)
    x = _pixels(r, file)
    with lock:
        doc = feature_maps(r.model, x)
    return {"run": r.name, "classes": r.classes, **doc}


@router.post("/explorer/cell", summary="One output cell of the first convolution, worked by hand")
def cell(
    request: Request, file: ImageFile,
    channel: Annotated[int, Form(ge=0)] = 0, i: Annotated[int, Form()] = 0, j: Annotated[int, Form()] = 0,
    run: RunName = None,
) -> dict[str, Any]:
    from cnnlab.serve.explorer import model_cell

    r, lock = _run(request, run)
    x = _pixels(r, file)
    with lock:
        return model_cell(r.model, x, channel, i, j)


@router.get("/explorer/lecture", summary="The lecture's worked convolution: image, kernels, bias, output map")
def lecture() -> dict[str, Any]:
    from cnnlab.serve.explorer import lecture_example

    return lecture_example()


@router.get("/explorer/lecture/cell", summary="One cell of the lecture's convolution, worked by hand (0,0 gives -25)")
def lecture_cell(i: int = 0, j: int = 0) -> dict[str, Any]:
    from cnnlab.serve.explorer import lecture_cell as work

    return work(i, j)
