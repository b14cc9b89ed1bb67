"""The playground's HTTP side: the points of a data set, and a training streamed as
server-sent events (`text/event-stream`: one `data: {json}` per frame), which the page reads
as a stream. Choices are checked before the stream starts, so a bad one is an ordinary 400
with a sentence, not a broken stream.

A training is work the server does for as long as it runs, so it is held to three bounds: its
steps (`MAX_STEPS`, checked with the choices), how many run at once (`MAX_TRAININGS`; one
more is answered 429), and its client: each training runs in its own thread and stops at its
next step when the client disconnects or the server stops (`Trainings.stop_all`).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from cnnlab.errors import CnnlabError
from cnnlab.serve.answers import ServeError, documented
from cnnlab.serve.playground.data2d import DATASETS, make_points, split
from cnnlab.serve.playground.train2d import (
    ACTIVATIONS,
    EXTENT,
    GRID,
    OPTIMIZERS,
    PlaygroundConfig,
    train_frames,
)

router = APIRouter(prefix="/api/playground", responses=documented(400, 422))
# Two trainings keep the two cores of a small machine busy; a third would only slow all of them
# and the other requests (40 at once left /api/predict unanswered for minutes)
MAX_TRAININGS = 2
Seed = Annotated[int, Query(ge=0, le=2**31 - 1)]


class Trainings:
    """The trainings running in one server: at most MAX_TRAININGS, each stoppable."""

    def __init__(self, limit: int = MAX_TRAININGS) -> None:
        self._slots = threading.BoundedSemaphore(limit)
        self._stops: set[threading.Event] = set()
        self._lock = threading.Lock()
        self.limit = limit

    def start(self, config: PlaygroundConfig) -> AsyncIterator[str]:
        """Start `config`'s training in a thread; the events of its frames. 429 when full."""
        if not self._slots.acquire(blocking=False):
            raise ServeError(f"{self.limit} trainings are running already, the server's limit; try again when one ends.",
                             429, {"Retry-After": "10"})
        stop = threading.Event()
        with self._lock:
            self._stops.add(stop)
        loop = asyncio.get_running_loop()
        frames: asyncio.Queue[str | None] = asyncio.Queue()

        def post(event: str | None) -> bool:
            try:
                loop.call_soon_threadsafe(frames.put_nowait, event)
                return True
            except RuntimeError:  # the event loop has closed: nobody is listening
                return False

        def train() -> None:
            try:
                for frame in train_frames(config, stop):
                    if not post(f"data: {json.dumps(frame)}\n\n"):
                        return
            finally:
                with self._lock:
                    self._stops.discard(stop)
                self._slots.release()
                post(None)

        # daemon: a stopped server does not wait for it (it would stop at its next step anyway)
        threading.Thread(target=train, name="cnnlab-playground", daemon=True).start()

        async def events() -> AsyncIterator[str]:
            try:
                while (event := await frames.get()) is not None:
                    yield event
            finally:  # finished, or the client left (Starlette cancels the stream on its disconnect)
                stop.set()

        return events()

    def stop_all(self) -> None:
        with self._lock:
            for stop in self._stops:
                stop.set()


def _hidden(text: str) -> list[int]:
    """'4,4' -> [4, 4]; '' or '0' -> [] (logistic regression)."""
    text = text.strip()
    if text in ("", "0"):
        return []
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise CnnlabError(f"hidden must list neurons per layer like 4,4 (or be empty for logistic regression), got '{text}'.") from None


@router.get("/options", summary="What a user can choose")
def options() -> dict[str, Any]:
    return {"datasets": list(DATASETS), "activations": list(ACTIVATIONS), "optimizers": list(OPTIMIZERS),
            "defaults": PlaygroundConfig().__dict__, "grid": GRID, "extent": EXTENT}


@router.get("/data", summary="The points of a 2-D data set, split into train and test")
def data(dataset: str = "circles", n: int = 400, noise: float = 0.05, seed: Seed = 0) -> dict[str, Any]:
    x, y = make_points(dataset, n, noise, seed)
    (xtr, ytr), (xte, yte) = split(x, y)
    pts = lambda a, b: [[round(p, 4), round(q, 4), int(c)] for (p, q), c in zip(a.tolist(), b.tolist())]  # noqa: E731
    return {"dataset": dataset, "train": pts(xtr, ytr), "test": pts(xte, yte), "extent": EXTENT}


@router.get("/train", summary="Train a network and stream its progress (server-sent events)",
            response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}, **documented(429)})
async def train(
    request: Request, dataset: str = "circles", n: int = 400, noise: float = 0.05,
    hidden: Annotated[str, Query(max_length=200, description="neurons per hidden layer, e.g. 4,4; empty = logistic regression")] = "4",
    activation: str = "tanh", optimizer: str = "adam", lr: float = 0.03, batch_size: int = 16, epochs: int = 100, seed: Seed = 0,
) -> StreamingResponse:
    """Each event is a frame: epoch, train/test loss and accuracy, and `grid`, the probability
    of class 1 on a GRID x GRID grid over [-EXTENT, EXTENT]^2 (row 0 at the top). The last frame
    has `done: true`, `learned` (weights and biases) and `chosen` (the hyperparameters).
    At most MAX_STEPS optimizer steps (epochs x batches per epoch) and MAX_TRAININGS at once."""
    config = PlaygroundConfig(dataset, n, noise, _hidden(hidden), activation, optimizer, lr, batch_size, epochs, seed).check()
    events = request.app.state.trainings.start(config)
    return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
