"""Dynamic micro-batching: requests that arrive close together share one forward pass.

A forward pass of LeNet-5 on one image took 0.64 ms on one core, on 16 images 2.6 ms (0.17 ms
each), on 64 images 8.2 ms (0.13 ms each): most of a small batch's time is the pass, not the
images. So predictions are not computed per request; each request puts its pixels in a queue
and awaits its row of the result. One worker thread takes the first waiting input, then every
input that arrives within `wait` seconds (or until `max_batch`), runs one forward pass on the
stack, and hands each row back to the request that sent it (Clipper, Crankshaw et al. 2017,
and TorchServe's `batch_size` / `max_batch_delay` do the same).

Under light load a request waits at most `wait` for company; under heavy load the inputs that
queue while one pass runs form the next batch, so the batch grows with the load by itself.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import torch
from torch import Tensor

Row = TypeVar("Row")

MAX_BATCH = 64  # past 64 LeNet-5 images a pass gained < 5% per image; a batch of 224x224 RGB is 38 MB
WAIT = 0.002  # seconds: 2 ms is under a tenth of a loaded server's p50, and lets a second request join


class MicroBatcher(Generic[Row]):
    """`await batcher(x)` for x (1, C, H, W) -> `forward`'s row for x, computed in one pass
    with the inputs of other requests. `forward(stack)` takes (N, C, H, W) and returns N rows."""

    def __init__(self, forward: Callable[[Tensor], list[Row]], max_batch: int = MAX_BATCH, wait: float = WAIT) -> None:
        self.forward = forward
        self.max_batch = max_batch
        self.wait = wait
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._start = threading.Lock()  # guards _queue and _worker
        self.batches = 0  # how many passes ran, and on how many inputs: what a test or a benchmark reads
        self.inputs = 0

    async def __call__(self, x: Tensor) -> Row:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        with self._start:
            if self._worker is None:
                # daemon: the server's exit never waits for it; nothing it holds needs saving
                self._worker = threading.Thread(target=self._work, args=(self._queue,), name="cnnlab-batcher", daemon=True)
                self._worker.start()
            self._queue.put((x, loop, done))
        return await done

    def close(self) -> None:
        """Stop the worker once the inputs already queued are computed; a later call starts a
        new one (an app's lifespan may end and start again, as in tests)."""
        with self._start:
            if self._worker is not None:
                self._queue.put(None)
                self._queue, self._worker = queue.SimpleQueue(), None

    def _collect(self, inputs: queue.SimpleQueue) -> list | None:
        first = inputs.get()
        if first is None:
            return None
        batch = [first]
        deadline = time.monotonic() + self.wait
        while len(batch) < self.max_batch:
            try:
                item = inputs.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                inputs.put(None)  # stop after this batch
                break
            batch.append(item)
        return batch

    def _work(self, inputs: queue.SimpleQueue) -> None:
        while (batch := self._collect(inputs)) is not None:
            try:
                rows = self.forward(torch.cat([x for x, _, _ in batch]))
                outcome = [(done, row, None) for (_, _, done), row in zip(batch, rows)]
            except Exception as e:  # noqa: BLE001  handed to every waiting request; the worker lives on
                outcome = [(done, None, e) for _, _, done in batch]
            self.batches += 1
            self.inputs += len(batch)
            by_loop: dict[asyncio.AbstractEventLoop, list] = {}
            for (_, loop, _), result in zip(batch, outcome):
                by_loop.setdefault(loop, []).append(result)
            for loop, results in by_loop.items():  # one wake-up per event loop, not per request
                try:
                    loop.call_soon_threadsafe(_settle, results)
                except RuntimeError:  # that loop has closed: its requests are gone
                    pass


def _settle(results: list) -> None:
    for done, row, error in results:
        if done.cancelled():  # the client left, or its request timed out
            continue
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(row)
