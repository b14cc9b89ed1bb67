"""Listening: `listen(run_dir, host, port)` serves a run until Ctrl-C or SIGTERM.

In order: refuse a host beyond loopback without a token (access.py); open the run (a broken
one is its sentence, before anything listens); bind the port (a busy one is a sentence, and
the URL is printed only once the port is ours); then uvicorn, with uvloop and httptools when
installed (uvicorn picks them itself), on the socket already bound.

`workers` > 1 starts that many processes on the one socket (uvicorn's supervisor; the kernel
spreads the connections): each has its own event loop, model and micro-batcher, so the HTTP
work, which holds one core per process, spreads over the cores. Measured on 2 busy cores
(LeNet-5, wrk -c16): 2 workers answered 1.15-1.7x the requests/s of one.

SIGTERM lets open requests finish for `GRACE_SECONDS`, then cancels them: a client that keeps
a stream open cannot hold a stopping server.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cnnlab.errors import CnnlabError
from cnnlab.serve.access import check_exposure

if TYPE_CHECKING:
    from fastapi import FastAPI

GRACE_SECONDS = 3
MAX_WORKERS = 32
WORKER_SETTINGS = "CNNLAB_SERVE_WORKER"  # how the worker processes learn the run, token and origins


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, or one sentence saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart need not wait for TIME_WAIT to pass
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise CnnlabError(f"port {port} on {host} is already in use (another server?); choose another with --port.") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise CnnlabError(f"{host} is not an address of this machine; use 127.0.0.1, 0.0.0.0 or one of its own.") from None
        if e.errno == errno.EACCES:
            raise CnnlabError(f"port {port} needs administrator rights (ports below 1024 do); choose one above 1024.") from None
        raise CnnlabError(f"cannot listen on {host}:{port}: {e.strerror or e}.") from None
    except (socket.gaierror, UnicodeError, OverflowError) as e:
        sock.close()
        raise CnnlabError(f"cannot listen on {host}:{port}: {e}.") from None
    return sock


def url(host: str, port: int, path: str = "/") -> str:
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}{path}"


def listen(
    run_dir: str | Path | None, host: str = "127.0.0.1", port: int = 8000, *,
    token: str | None = None, cors: Sequence[str] = (), workers: int = 1, announce: Callable[[str], None] = print,
) -> None:
    """Serve `run_dir` (None: the playground alone) until stopped; `announce` gets the URL once listening."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    check_exposure(host, token)
    if not 1 <= workers <= min(MAX_WORKERS, 2 * (os.cpu_count() or 1)):
        raise CnnlabError(f"--workers must be between 1 and twice the {os.cpu_count()} cores here, got {workers}.")
    settings = {"run": str(run_dir) if run_dir is not None else None, "token": token, "cors": list(cors)}
    web = _app(settings)  # a bad run is its sentence here, before anything listens
    sock = bind(host, port)
    page = url(host, port, "/playground" if run_dir is None else "/")
    announce(f"{page}{'#token=' + token if token else ''}   API docs: {url(host, port, '/docs')}   (Ctrl-C stops)")
    if workers == 1:
        config = uvicorn.Config(web, log_level="warning", timeout_graceful_shutdown=GRACE_SECONDS)
        uvicorn.Server(config).run(sockets=[sock])
        return
    del web  # each worker opens the run itself
    os.environ[WORKER_SETTINGS] = json.dumps(settings)  # the spawned workers inherit it
    config = uvicorn.Config("cnnlab.serve.server:worker_app", factory=True, workers=workers, log_level="warning",
                            timeout_graceful_shutdown=GRACE_SECONDS)
    Multiprocess(config, sockets=[sock]).run()


def worker_app() -> FastAPI:
    """The app of one worker process of `listen(..., workers=N)`; uvicorn imports it by name."""
    return _app(json.loads(os.environ[WORKER_SETTINGS]))


def _app(settings: dict) -> FastAPI:
    import torch

    from cnnlab.serve.app import create_app

    # One thread per forward pass: with two, a 16-image LeNet-5 batch took 32 ms instead of 2.6 ms
    # on 2 busy cores (the second thread spins while the event loop wants the core).
    torch.set_num_threads(1)
    web = create_app(settings["run"], token=settings["token"], cors=settings["cors"])
    # What start-up made (torch, the model, FastAPI's routes: 230,000 objects) lives as long as
    # the server: out of the garbage collector's sight, a full collection no longer walks it,
    # which took 120-380 ms each time, a stall of every request in flight.
    gc.freeze()
    return web
