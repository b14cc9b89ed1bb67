"""The playground's HTTP side: the points of a data set, and a training streamed as
server-sent events (`text/event-stream`: one `data: {json}` per frame), which the page reads
with the browser's EventSource. Choices are checked before the stream starts, so a bad one is
an ordinary 400 with a sentence, not a broken stream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from cnnlab.errors import CnnlabError
from cnnlab.serve.playground.data2d import DATASETS, make_points, split
from cnnlab.serve.playground.train2d import ACTIVATIONS, EXTENT, GRID, OPTIMIZERS, PlaygroundConfig, train_frames

router = APIRouter(prefix="/api/playground")


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
def data(dataset: str = "circles", n: int = 400, noise: float = 0.05, seed: int = 0) -> dict[str, Any]:
    x, y = make_points(dataset, n, noise, seed)
    (xtr, ytr), (xte, yte) = split(x, y)
    pts = lambda a, b: [[round(p, 4), round(q, 4), int(c)] for (p, q), c in zip(a.tolist(), b.tolist())]  # noqa: E731
    return {"dataset": dataset, "train": pts(xtr, ytr), "test": pts(xte, yte), "extent": EXTENT}


@router.get("/train", summary="Train a network and stream its progress (server-sent events)",
            response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})
def train(
    dataset: str = "circles", n: int = 400, noise: float = 0.05,
    hidden: Annotated[str, Query(description="neurons per hidden layer, e.g. 4,4; empty = logistic regression")] = "4",
    activation: str = "tanh", optimizer: str = "adam", lr: float = 0.03, batch_size: int = 16, epochs: int = 100, seed: int = 0,
) -> StreamingResponse:
    """Each event is a frame: epoch, train/test loss and accuracy, and `grid`, the probability
    of class 1 on a GRID x GRID grid over [-EXTENT, EXTENT]^2 (row 0 at the top). The last frame
    has `done: true`, `learned` (weights and biases) and `chosen` (the hyperparameters)."""
    config = PlaygroundConfig(dataset, n, noise, _hidden(hidden), activation, optimizer, lr, batch_size, epochs, seed).check()

    def events() -> Iterator[str]:
        for frame in train_frames(config):
            yield f"data: {json.dumps(frame)}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
