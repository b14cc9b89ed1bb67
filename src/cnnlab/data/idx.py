"""IDX files, the format MNIST and Fashion-MNIST ship in (LeCun et al., yann.lecun.com/exdb/mnist).

A file is a 4-byte magic number -- two zero bytes, a type code, the number of dimensions --
then each dimension as a big-endian uint32, then every value in C order, big-endian.
Files are usually gzipped; `read_idx` tells by the content (gzip starts with 1f 8b, IDX with
00 00), so a name that lies about it does not matter.
"""

from __future__ import annotations

import gzip
import io
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from cnnlab.errors import CnnlabError

# type code -> big-endian numpy dtype (the table on the MNIST page)
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES = {np.dtype(d).newbyteorder("="): code for code, d in _DTYPES.items()}
# MNIST's and Fashion-MNIST's largest file unpacks to 47 MB; 1 GiB leaves room for larger IDX sets
# (EMNIST ByClass: 547 MB) and refuses a gzip bomb before it fills the memory.
MAX_BYTES = 1 << 30


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in an IDX file (gzipped or plain), in native byte order.

    One `frombuffer` over the whole payload: 60,000 Fashion-MNIST images read in about 0.3 s
    (most of it gunzip), where a Python loop over images would take seconds.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
                raw = f.read(MAX_BYTES + 1)  # a few KB of gzip can unpack to gigabytes: read no more
    except (OSError, EOFError, zlib.error) as e:  # missing, unreadable, or a cut-off gzip stream
        raise CnnlabError(f"cannot read IDX file {path}: {e}.") from e
    if len(raw) > MAX_BYTES:
        raise CnnlabError(f"IDX file {path} unpacks to more than {MAX_BYTES:,} bytes, more than any dataset here holds.")

    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _DTYPES:
        raise CnnlabError(f"{path} is not an IDX file (its first bytes are not 00 00 <type> <ndim>).")
    dtype, ndim = np.dtype(_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CnnlabError(f"IDX file {path} is truncated: it ends inside its header.")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + math.prod(dims) * dtype.itemsize  # Python integers: np.prod would overflow
    if len(raw) != expected:
        raise CnnlabError(
            f"IDX file {path} is corrupt or truncated: its header promises {expected} bytes "
            f"for shape {dims}, but it holds {len(raw)}."
        )
    # astype copies into native byte order, and leaves a writable array torch can share
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write `array` as an IDX file, gzipped when the name ends in .gz (the tests' fixtures)."""
    path = Path(path)
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise CnnlabError(f"IDX cannot store dtype {array.dtype}; use one of uint8, int8, int16, int32, float32, float64.")
    data = (
        bytes([0, 0, code, array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.astype(_DTYPES[code]).tobytes()
    )
    path.write_bytes(gzip.compress(data, compresslevel=6) if path.name.endswith(".gz") else data)
