"""An uploaded image -> pixels (1, C, H, W) in [0, 1] for a run, refusing what could hurt.

Three limits, checked before any decoding: the request body (`MAX_UPLOAD_BYTES`, enforced by
`BodyLimit` while the bytes arrive, so a 10 GB upload is cut off, not stored), the image's
pixel count read from its header (`MAX_PIXELS`: a 100 kB PNG can declare 100,000 x 100,000
pixels and expand to 30 GB, a "decompression bomb"), and an empty file. The decoding itself
is `read_image`, the same conversion `cnnlab predict` and the imagefolder loader use, so the
server sees an upload exactly as training saw its images.
"""

from __future__ import annotations

import io
import json
import tempfile
import warnings
from pathlib import Path

from PIL import Image
from torch import Tensor

from cnnlab.errors import CnnlabError

MAX_UPLOAD_BYTES = 8 * 1024 * 1024  # a phone photo is 2-5 MB; a model here reads at most 224x224
MAX_PIXELS = 4096 * 4096  # 16.8 MP, 50 MB as RGB: stricter than read_image's 64 MP for a shared server


class BadUpload(CnnlabError):
    """An upload that is not a usable image (answered 400, or 413 when too large)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def read_upload(data: bytes, filename: str, shape: tuple[int, int, int]) -> Tensor:
    """Bytes of an uploaded image -> (1, C, H, W) float32 in [0, 1] for a model of `shape`."""
    from cnnlab.data.images import read_image

    if not data:
        raise BadUpload("the uploaded file is empty; send an image (PNG, JPEG, ...) in the field 'file'.")
    if len(data) > MAX_UPLOAD_BYTES:
        raise BadUpload(f"the upload is over {MAX_UPLOAD_BYTES // 2**20} MB; send a smaller image.", 413)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:  # reads the header only
                width, height = im.size
    except Image.DecompressionBombError:  # Pillow's own check, past 2 x its limit of 89 MP
        width, height = MAX_PIXELS + 1, 1
    except Exception:  # noqa: BLE001  Pillow raises many types on bytes that are not an image
        raise BadUpload(f"{filename} is not an image Pillow can read (PNG, JPEG, GIF, BMP, TIFF, WebP).") from None
    if width * height > MAX_PIXELS:
        raise BadUpload(
            f"{filename} declares more than {MAX_PIXELS:,} pixels; "
            "refused as a possible decompression bomb, send a smaller image.", 413,
        )
    c, h, w = shape
    with tempfile.TemporaryDirectory(prefix="cnnlab-upload-") as tmp:
        path = Path(tmp) / "upload"
        path.write_bytes(data)
        try:
            x = read_image(path, c, (h, w))  # (C, H, W)
        except CnnlabError as e:
            raise BadUpload(str(e).replace(str(path), filename)) from None
    return x.unsqueeze(0)


async def _answer(send, status: int, message: str) -> None:  # noqa: ANN001
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: refuse a request body over `max_bytes` with 413, by its Content-Length
    or, for a chunked upload that declares none, as soon as the bytes received pass the limit.
    The app then sees its body end in an error; whatever it answers to that is replaced by the
    413 (FastAPI turns any failure while parsing a form into its own 400)."""

    def __init__(self, app, max_bytes: int = MAX_UPLOAD_BYTES + 64 * 1024) -> None:  # noqa: ANN001  room for the form
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body is over {self.max_bytes // 2**20} MB; send a smaller image."
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _answer(send, 413, message)
            return
        seen, too_large, answered = 0, False, False

        async def counting_receive():  # noqa: ANN202
            nonlocal seen, too_large
            event = await receive()
            seen += len(event.get("body", b""))
            if seen > self.max_bytes:
                too_large = True
                raise _TooLarge
            return event

        async def guarded_send(event) -> None:  # noqa: ANN001
            nonlocal answered
            if not too_large:
                await send(event)
            elif not answered:
                answered = True
                await _answer(send, 413, message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            pass
        if too_large and not answered:
            await _answer(send, 413, message)
