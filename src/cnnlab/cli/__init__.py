"""The `cnnlab` command line: thin shells over the Python API (see cli/app.py)."""

from cnnlab.cli.app import app, main

__all__ = ["app", "main"]
