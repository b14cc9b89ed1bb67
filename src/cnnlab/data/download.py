"""The one place cnnlab touches the network: fetch a dataset's files, or say in one sentence why not.

Downloads go through torchvision's utilities, which check each file's MD5 and skip files
already present. Files a user brought (--data-dir, $CNNLAB_DATA, a Debian package) never pass
through here: their checksums need not match the upstream ones (Debian's Fashion-MNIST files
are recompressed, so every MD5 differs), and the IDX and CIFAR readers check their structure.
"""

from __future__ import annotations

import http.client
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path

from cnnlab.errors import CnnlabError


def cache_dir() -> Path:
    """Where downloads go by default: $CNNLAB_DATA, else ~/.cache/cnnlab/data."""
    return Path(os.environ.get("CNNLAB_DATA") or Path.home() / ".cache" / "cnnlab" / "data").expanduser()


def not_available(name: str, hint: str, why: str = "could not be downloaded (offline?)") -> CnnlabError:
    """The error for a dataset that is neither here nor fetchable: what is missing, what to do."""
    return CnnlabError(f"{name} is not on this machine and {why}: {hint}.")


def download_files(
    name: str,
    files: Sequence[tuple[str, str]],
    mirrors: Sequence[str],
    root: Path,
    hint: str,
    allowed: bool,
    extract: bool = False,
) -> Path:
    """Download each (filename, md5) in `files` into `root`, trying `mirrors` in order.

    `extract` unpacks each file (a .tar.gz) into `root` and deletes the archive. Returns `root`.
    `allowed=False` (CNNLAB_OFFLINE=1) raises at once, without a connection attempt.
    """
    from torchvision.datasets.utils import download_and_extract_archive, download_url

    if not allowed:
        raise not_available(name, hint, "downloading is switched off (CNNLAB_OFFLINE=1)")
    for filename, md5 in files:
        for i, mirror in enumerate(mirrors):
            url = mirror + filename
            try:
                if extract:
                    download_and_extract_archive(url, root, filename=filename, md5=md5, remove_finished=True)
                else:
                    download_url(url, root, filename=filename, md5=md5)
                break
            # URLError and socket errors are OSErrors; torchvision raises RuntimeError on a bad MD5
            except (OSError, RuntimeError, http.client.HTTPException, tarfile.TarError) as e:
                (root / filename).unlink(missing_ok=True)  # a partial file must not pass for the real one
                if i == len(mirrors) - 1:
                    raise not_available(name, hint) from e
    return root
