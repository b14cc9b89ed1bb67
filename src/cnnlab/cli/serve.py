"""`cnnlab serve RUN` (the inference API and the lab page) and `cnnlab playground` (the 2-D
playground alone). Both bind 127.0.0.1 unless told otherwise: the API runs models on uploads,
which is for this machine's user; any other --host needs a token (cnnlab.serve.server)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli.output import console

Host = Annotated[str, typer.Option("--host", help="Address to listen on; anything but loopback (0.0.0.0: the network) needs --token.")]
Port = Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")]
Token = Annotated[str | None, typer.Option(
    "--token", envvar="CNNLAB_TOKEN", show_envvar=True,
    help="Secret every /api request must send as 'Authorization: Bearer TOKEN' (16+ characters).")]
Workers = Annotated[int, typer.Option(
    "--workers", min=1, help="Server processes on the one port; 2 on 2 cores answered up to 1.7x the predictions/s of 1.")]
Cors = Annotated[list[str] | None, typer.Option(
    "--cors", metavar="ORIGIN", help="Let pages from ORIGIN (e.g. https://lab.example.org) call the API; repeatable. Off by default.")]


def serve(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory (its siblings can be chosen in the page).")],
    host: Host = "127.0.0.1",
    port: Port = 8000,
    token: Token = None,
    cors: Cors = None,
    workers: Workers = 1,
) -> None:
    """Serve a trained run: HTTP API (predict, explain, attack) with OpenAPI at /docs, and the lab page."""
    from cnnlab.serve.server import listen

    listen(run_dir, host, port, token=token, cors=cors or (), workers=workers, announce=_announce("lab"))


def playground(host: Host = "127.0.0.1", port: Port = 8000, token: Token = None, cors: Cors = None) -> None:
    """Train small networks on 2-D toy data in the browser (logistic regression vs hidden layers)."""
    from cnnlab.serve.server import listen

    listen(None, host, port, token=token, cors=cors or (), announce=_announce("playground"))


def _announce(page: str):  # noqa: ANN202
    return lambda line: console.print(f"{page}: {line}", markup=False, highlight=False)  # markup off: [::1] is an address
