"""`cnnlab serve`: a trained run over HTTP, with the lab page and the playground in the browser.

    from cnnlab.serve import create_app
    app = create_app("runs/quickstart")      # FastAPI; uvicorn.run(app, host="127.0.0.1")

Files: `app.py` builds the app; `server.py` listens (port, token check, workers, SIGTERM);
`access.py` who may call (loopback, bearer token); `answers.py` how errors are answered;
`limits.py` bounds on a request's work and time; `uploads.py` turns an upload into pixels,
refusing what is too big; `runs.py` opens and checks runs by name; `batching.py` micro-batches
predictions; `lab_api.py` the inference API (predict, explain, attack, model); `task_api.py`
the answers of detection and segmentation runs (boxes, masks); `explorer.py`
feature maps and one convolution cell worked out (the lecture's example comes from
`cnnlab.inside.conv`); `pictures.py` tensors to PNG; `playground/` the 2-D toy data and its
streamed, bounded training; `static/` the pages.
"""

from __future__ import annotations

from cnnlab.serve.app import create_app

__all__ = ["create_app"]
