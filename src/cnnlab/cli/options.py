"""Arguments and options several commands share, and the parsing of their text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnlab.errors import CnnlabError


def check_weights(value: str) -> str:
    """model or best: an analysis of untrained weights ('none', which Run.load accepts for a
    resume) would report numbers that look real."""
    if value not in ("model", "best"):
        raise CnnlabError(f"--weights must be model (last epoch) or best (best validation epoch), got '{value}'.")
    return value


RunArg = Annotated[Path, typer.Argument(metavar="RUN", help="A run directory.")]
Weights = Annotated[str, typer.Option(help="model (last epoch) or best (best validation epoch).", callback=check_weights)]


def parse_shape(text: str) -> tuple[int, ...]:
    """'3x32x32' -> (3, 32, 32): an --input option's channels x height x width; a clip's
    frames come first ('16x3x112x112')."""
    from cnnlab.data.images import check_input_shape

    try:
        shape = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) not in (3, 4):
        raise CnnlabError(f"--input must look like 3x32x32 (channels x height x width), or 16x3x32x32 for clips "
                          f"(frames first), got '{text}'.")
    return check_input_shape(shape, f"--input {text}")
