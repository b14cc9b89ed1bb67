"""`cnnlab serve RUN` (the inference API and the lab page) and `cnnlab playground` (the 2-D
playground alone). Both bind 127.0.0.1 unless told otherwise: the API runs models on uploads,
which is for this machine's user, not for the network."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli.output import console

Host = Annotated[str, typer.Option("--host", help="Address to listen on; 0.0.0.0 exposes the server to the network.")]
Port = Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")]


def _listen(run_dir: Path | None, host: str, port: int, page: str) -> None:
    import uvicorn

    from cnnlab.serve import create_app

    web = create_app(run_dir)  # a bad run is one sentence here, before anything listens
    shown = f"[{host}]" if ":" in host else host
    console.print(f"{page}: http://{shown}:{port}{'/playground' if run_dir is None else '/'}   "
                  f"API docs: http://{shown}:{port}/docs   (Ctrl-C stops)")
    try:
        uvicorn.run(web, host=host, port=port, log_level="warning")
    except SystemExit as e:  # uvicorn exits 1 when the port is taken, after logging why
        raise typer.Exit(1) from e


def serve(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory (its siblings can be chosen in the page).")],
    host: Host = "127.0.0.1",
    port: Port = 8000,
) -> None:
    """Serve a trained run: HTTP API (predict, explain, attack) with OpenAPI at /docs, and the lab page."""
    _listen(run_dir, host, port, "lab")


def playground(host: Host = "127.0.0.1", port: Port = 8000) -> None:
    """Train small networks on 2-D toy data in the browser (logistic regression vs hidden layers)."""
    _listen(None, host, port, "playground")
