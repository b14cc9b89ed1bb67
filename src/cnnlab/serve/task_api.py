"""What and where, over HTTP: `/api/detect` answers a detection run with boxes, `/api/segment`
a segmentation run with a class for every pixel, `/api/pose` a pose run with each body joint,
all in the uploaded image's own pixels.

Every such endpoint is the same few steps, in `answer`: the upload, read as /api/predict reads
it (the multipart field `file`, or the whole body with an image Content-Type; the same limits),
the run's model on it resized to the model's input, then the task's own `Task.predictions`
(tasks/detect.py, tasks/segment.py), the very answer `cnnlab predict` gives: boxes or a class
map brought back to the image's size, and a picture of them. The pictures it saves come back
inline, as PNG data URLs, so nothing a request causes stays on the server's disk. A run of
another task is one sentence naming the endpoint that answers it.

A new task's endpoint is: its line in ENDPOINTS and WORDS, a
pydantic model of its answer (the keys its `predictions` gives, plus `Answer`'s), and a function
that awaits `answer(request, run, task, **its options)`; the lab page draws it through where.js.
"""

from __future__ import annotations

import base64
import io
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from cnnlab.data.coco import file_size
from cnnlab.serve.answers import ServeError, documented
from cnnlab.serve.lab_api import IMAGE_BODY, UPLOADS, RunName, on_analysis_copy, served_run
from cnnlab.serve.limits import check_work
from cnnlab.serve.runs import ENDPOINTS, Served
from cnnlab.serve.uploads import image_size, read_upload, request_image
from cnnlab.tasks.detect import SCORE_THRESHOLD, SHOWN_SCORE
from cnnlab.tasks.pose import skeleton
from cnnlab.tasks.segment import class_colour

router = APIRouter(prefix="/api", responses=documented(400, 404, 422, 503))

WORDS = {"classify": "classification", "detect": "detection", "segment": "segmentation", "pose": "pose"}


class Answer(BaseModel):
    """What every task's answer holds besides its predictions."""

    run: str
    width: int = Field(description="the image's width in pixels (after its EXIF orientation): the frame of the answer")
    height: int
    classes: list[str]
    colours: list[str | None] = Field(description="each class's colour in the pictures (CSS hex), none for the background")
    picture: str = Field(description="the image with the predictions drawn over it, a PNG data URL")


class Box(BaseModel):
    box: list[float] = Field(description="x1, y1, x2, y2 in the image's own pixels")
    class_: str = Field(alias="class")
    score: float


class Detection(Answer):
    boxes: list[Box] = Field(description="the detections scored `min_score` or more, best first")


class Segmentation(Answer):
    mask: str = Field(description="a PNG data URL, 8-bit gray, the image's size: each pixel's class index (0 the background)")
    pixels: dict[str, float] = Field(description="the share of the image's pixels each class found takes")


class Pose(Answer):
    joints: dict[str, list[float]] = Field(description="each joint's x, y in the image's own pixels (pixel centres at integers)")
    limbs: list[list[str]] = Field(description="the skeleton: the pairs of joints joined by a stick in the picture")


def wrong_task(served: Served, task: str) -> ServeError:
    endpoint = ENDPOINTS[task]
    other = ENDPOINTS.get(served.task)
    where = f"; send its images to {other}" if other else ""
    return ServeError(f"run {served.name} learned the {served.task} task; {endpoint} answers for "
                      f"{WORDS.get(task, task)} runs only{where}.")


async def answer(request: Request, run: str | None, task: str, **options: Any) -> dict[str, Any]:  # noqa: ANN401
    """The uploaded image's predictions by the run `run` (the served one by default), which
    must have learned `task`: `Task.predictions` in the image's own pixels (with the task's
    own `options`, such as a detector's `min_score`), pictures inline."""
    served = await served_run(request, run)
    if served.task != task:
        raise wrong_task(served, task)
    # One forward pass. The pictures are drawn at the image's size, bounded by the upload limit:
    # 2.1 s for 4.2 MP at load 18 (half of it PNG encoding), so about 8 s at 16.8 MP.
    check_work(1, served.forward_seconds, ENDPOINTS[task], "this model is too slow to serve on this server")
    data, name = await request_image(request)
    image_size(data, name)  # empty, unreadable or a bomb: refused before anything is decoded

    def work() -> dict[str, Any]:
        shape = served.run.input_shape
        # decoded twice, as `cnnlab predict` reads a file: the model's input, and the image as it is
        # (the frame of the answer), so both give the same answer to the same bytes
        x = read_upload(data, name, shape)
        height, width = file_size(io.BytesIO(data))
        image = read_upload(data, name, (3, height, width))[0]
        run_task = served.run.task
        outputs = run_task.outputs(served.analysis, x)
        with tempfile.TemporaryDirectory(prefix="cnnlab-serve-") as folder:
            (found,) = run_task.predictions(outputs, shape[1:], [image], ["upload"], Path(folder), **options)
            found = {key: _inline(value, Path(folder)) for key, value in found.items()}
        classes = served.run.classes
        return {"run": served.name, "width": width, "height": height, "classes": classes,
                "colours": [None] + [class_colour(k) for k in range(1, len(classes))], **found}

    return await on_analysis_copy(served, work)


def _inline(value: Any, folder: Path) -> Any:  # noqa: ANN401  a value of a task's JSON answer
    """A PNG the task saved in `folder` -> its data URL; any other value as it is."""
    if isinstance(value, str) and Path(value).parent == folder and value.endswith(".png"):
        return "data:image/png;base64," + base64.b64encode(Path(value).read_bytes()).decode()
    return value


@router.post("/detect", summary="Boxes of the objects in an uploaded image (a detection run)", response_model=Detection,
             responses=UPLOADS, openapi_extra={"requestBody": IMAGE_BODY})
async def detect(
    request: Request, run: RunName = None,
    min_score: Annotated[float, Query(ge=SCORE_THRESHOLD, le=1, description="the lowest score of a box returned")] = SHOWN_SCORE,
) -> dict[str, Any]:
    """The image is the multipart field `file`, or the whole body with an image Content-Type.
    Boxes x1, y1, x2, y2 in the image's own pixels, with a class and a score (`min_score` or
    more), and the image with them drawn (`picture`)."""
    return await answer(request, run, "detect", min_score=min_score)


@router.post("/segment", summary="A class for every pixel of an uploaded image (a segmentation run)",
             response_model=Segmentation, responses=UPLOADS, openapi_extra={"requestBody": IMAGE_BODY})
async def segment(request: Request, run: RunName = None) -> dict[str, Any]:
    """The image is the multipart field `file`, or the whole body with an image Content-Type.
    The class map at the image's own size (`mask`, class indices as a gray PNG), the share of
    the pixels each class takes, and the image with the classes painted over it (`picture`)."""
    return await answer(request, run, "segment")


@router.post("/pose", summary="The body joints of the person in an uploaded image (a pose run)", response_model=Pose,
             responses=UPLOADS, openapi_extra={"requestBody": IMAGE_BODY})
async def pose(request: Request, run: RunName = None) -> dict[str, Any]:
    """The image is the multipart field `file`, or the whole body with an image Content-Type.
    Each joint's x, y in the image's own pixels (the last stage's estimate), the skeleton's
    sticks as pairs of joint names, and the image with the skeleton drawn (`picture`)."""
    found = await answer(request, run, "pose")
    names = found["classes"]
    return {**found, "limbs": [[names[a], names[b]] for a, b in skeleton(names)]}
