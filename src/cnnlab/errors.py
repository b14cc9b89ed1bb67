"""The one error type a user can cause, caught once at the CLI boundary."""

from __future__ import annotations

import difflib


class CnnlabError(Exception):
    """A problem the user can act on; its message is one sentence that says what to do."""


def unknown_name(kind: str, name: str, known: list[str]) -> CnnlabError:
    """`unknown model 'lenet'; did you mean lenet5? (known: ...)` — close names first."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.75)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return CnnlabError(f"unknown {kind} '{name}'; {hint}known {kind}s: {', '.join(known)}.")
