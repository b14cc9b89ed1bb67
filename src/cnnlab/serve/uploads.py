"""An uploaded image -> pixels (1, C, H, W) in [0, 1] for a run, refusing what could hurt.

Three limits, checked before any decoding: the request body (`MAX_UPLOAD_BYTES`, enforced by
`BodyLimit` while the bytes arrive, so a 10 GB upload is cut off, not stored), the image's
pixel count read from its header (`MAX_PIXELS`: a 100 kB PNG can declare 100,000 x 100,000
pixels and expand to 30 GB, a "decompression bomb"), and an empty file. The decoding itself
is `read_image`, the same conversion `cnnlab predict` and the imagefolder loader use, so the
server sees an upload exactly as training saw its images; it decodes from memory (a temporary
file per upload cost 3 ms, the decoding 0.1 ms).

An image arrives either as the multipart field `file` (an HTML form, `curl -F file=@d.png`) or
as the whole request body with an image content type (`curl --data-binary @d.png -H
'Content-Type: image/png'`), which spares the server the multipart parsing.
"""

from __future__ import annotations

import io
import json
import warnings

from PIL import Image
from starlette.datastructures import UploadFile
from starlette.requests import Request
from torch import Tensor

from cnnlab.errors import CnnlabError

MAX_UPLOAD_BYTES = 8 * 1024 * 1024  # a phone photo is 2-5 MB; a model here reads at most 224x224
MAX_PIXELS = 4096 * 4096  # 16.8 MP, 50 MB as RGB: stricter than read_image's 64 MP for a shared server
RAW_TYPES = ("image/", "application/octet-stream")  # a request body that is the image itself


class BadUpload(CnnlabError):
    """An upload that is not a usable image (answered 400, or 413 when too large)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class _Named(io.BytesIO):
    """The upload's bytes, carrying the client's file name for read_image's messages."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name


def image_size(data: bytes, filename: str) -> tuple[int, int]:
    """(width, height) from the image's header alone; refuses empty, unreadable and bomb-sized uploads."""
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
    return width, height


def read_upload(data: bytes, filename: str, shape: tuple[int, int, int]) -> Tensor:
    """Bytes of an uploaded image -> (1, C, H, W) float32 in [0, 1] for a model of `shape`."""
    from cnnlab.data.images import read_image

    image_size(data, filename)
    c, h, w = shape
    try:
        return read_image(_Named(data, filename), c, (h, w)).unsqueeze(0)
    except CnnlabError as e:
        raise BadUpload(str(e)) from None


async def request_image(request: Request) -> tuple[bytes, str]:
    """The image of a request and a name for it: the whole body when its Content-Type is an
    image type, else the multipart field `file`."""
    kind = request.headers.get("content-type", "")
    if kind.startswith(RAW_TYPES):
        return await request.body(), "the upload"
    if not kind:
        raise BadUpload("the request has no image; send it as the multipart field 'file', or as the body with "
                        "Content-Type image/png (or another image type).", 422)
    if not kind.startswith("multipart/form-data"):
        raise BadUpload("send the image as the multipart field 'file', or as the body with Content-Type image/png "
                        f"(or another image type); got Content-Type '{kind}'.", 415)
    try:
        form = await request.form(max_files=1, max_fields=8)
    except Exception:  # noqa: BLE001  python-multipart raises several types on a malformed body
        raise BadUpload("the multipart body could not be parsed; send the image in the field 'file'.") from None
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise BadUpload("the multipart field 'file' is missing; send the image in it.", 422)
    return await file.read(MAX_UPLOAD_BYTES + 1), file.filename or "the upload"


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
