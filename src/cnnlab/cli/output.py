"""What every command prints: rich tables, or with --json one JSON document on stdout; and
errors, caught here once, as one sentence on stderr with a non-zero exit code."""

from __future__ import annotations

import json
import os
import re
import sys
import warnings
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cnnlab.errors import CnnlabError

# Long paths stay on one line; piped output gets 120 columns, not rich's 80, so tables stay whole.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", 120)))

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]


def emit(doc: dict[str, Any] | list[Any]) -> None:
    """The --json output: one document, paths and other objects as strings, a NaN or infinite
    number as null (JSON has no such numbers: a parser would refuse the whole document)."""
    from cnnlab.files import finite  # here, not at the top: cnnlab.files brings torch, which --help never needs

    print(json.dumps(finite(doc), indent=2, default=str, allow_nan=False))


def table(title: str, header: list[str], rows: list[list[Any]]) -> Table:
    """A titled table; the first column and the named text columns left-aligned, numbers right."""
    t = Table(title=title, title_justify="left")
    for h in header:
        t.add_column(h, justify="left" if h in (header[0], "type", "chosen", "class") else "right")
    for r in rows:
        t.add_row(*(str(c) for c in r))
    return t


def run_command(app: Callable[[], Any]) -> None:
    """Run the command line; a user's error becomes one line on stderr and exit 1.

    CnnlabError is what cnnlab raises for a mistake a user can fix; OSError is a path they
    gave (missing, unwritable, a full disk); a failed allocation is a size they asked for (a
    batch, an input, a model too large for this machine). With --debug (CNNLAB_DEBUG) each
    shows the traceback.
    A warning is one line too, `warning: ...`, without the source line Python shows by default.
    """
    formatwarning = warnings.formatwarning
    if not os.environ.get("CNNLAB_DEBUG"):
        warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {message}\n"
    try:
        app()
    except CnnlabError as e:
        if os.environ.get("CNNLAB_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 1))
    except KeyboardInterrupt:
        print("interrupted.", file=sys.stderr)
        sys.exit(130)
    except OSError as e:
        if os.environ.get("CNNLAB_DEBUG"):
            raise
        where = f": {e.filename}" if e.filename else ""
        print(f"error: {e.strerror or e}{where}.", file=sys.stderr)
        sys.exit(1)
    except (MemoryError, RuntimeError) as e:  # numpy's MemoryError; torch's RuntimeError from its CPU allocator
        if os.environ.get("CNNLAB_DEBUG") or not (isinstance(e, MemoryError) or "can't allocate memory" in str(e)):
            raise
        asked = re.search(r"allocate (\d+) bytes", str(e))
        size = f" ({int(asked[1]) / 1e9:,.1f} GB at once)" if asked else ""
        print(f"error: this machine has not enough memory for what was asked{size}; "
              "ask for less (a smaller batch, input or model).", file=sys.stderr)
        sys.exit(1)
    finally:
        warnings.formatwarning = formatwarning
