"""Bounds on the work one request can ask for, so that one client cannot pin the CPU.

What a request costs is known before it runs: a forward pass of the run's model was timed when
the run was opened (`Served.forward_seconds`), and an attack or an explanation is a known
number of passes. A request whose estimate passes `WORK_SECONDS` is refused with 413 and a
sentence saying what to ask for instead; whatever still runs long is cut at `REQUEST_SECONDS`
by `TimeLimit` (503). The playground's trainings have their own bounds (playground/api.py).
"""

from __future__ import annotations

import asyncio

from cnnlab.serve.answers import ServeError, answer

WORK_SECONDS = 10.0  # the longest computation one request may ask for; PGD's 100 steps on LeNet-5 take 0.2 s
REQUEST_SECONDS = 30.0  # a request still unanswered then gets 503; its computation, if any, finishes in the background
LOCK_SECONDS = 20.0  # how long an analysis waits for its model while others use it before answering 503
BACKWARD = 2.0  # a backward pass costs about two forward passes (Griewank and Walther 2008, the cheap gradient principle)


def check_work(passes: float, forward_seconds: float, what: str, advice: str) -> None:
    """Refuse (413) `passes` forward-pass equivalents when they would take over WORK_SECONDS."""
    seconds = passes * forward_seconds
    if seconds > WORK_SECONDS:
        raise ServeError(
            f"{what} would take about {seconds:.0f} s on this model, over the server's limit of {WORK_SECONDS:.0f} s; {advice}.",
            413,
        )


class TimeLimit:
    """ASGI middleware: an /api request that has not answered within `seconds` gets 503. A
    streamed answer (the playground's training) is not cut once it has started: it is bounded
    by its own limits."""

    def __init__(self, app, seconds: float = REQUEST_SECONDS) -> None:  # noqa: ANN001
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        started = False
        timer: asyncio.Timeout | None = None

        async def watched_send(event) -> None:  # noqa: ANN001
            nonlocal started
            if not started and timer is not None:
                started = True
                timer.reschedule(None)  # answering: a stream runs on under its own bounds
            await send(event)

        try:
            async with asyncio.timeout(self.seconds) as timer:
                await self.app(scope, receive, watched_send)
        except TimeoutError:
            if not started:
                await answer(send, 503, f"the request took longer than the server's limit of {self.seconds:.0f} s; "
                             "try again with a smaller image or fewer steps.")


def busy(what: str) -> ServeError:
    return ServeError(f"the model is busy with other {what} requests; try again in a few seconds.", 503, {"Retry-After": "5"})
