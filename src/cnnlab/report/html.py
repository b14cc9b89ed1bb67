"""HTML pieces for pages built from results: a table, an inlined image, a whole page.

Every page cnnlab writes (report.html, MODEL_CARD.html) is one self-contained file: figures
are inlined as base64 PNG, the style sheet is in the head, nothing is fetched.

    page("cnnlab report: run", [table(["eps", "accuracy"], rows), img(png, "accuracy against eps")])
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from html import escape
from pathlib import Path

STYLE = """body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}
th{background:#f3f3f3}img{max-width:100%}pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:12px}"""


def _text(value: object) -> str:
    return escape(str(value))


def table(header: list[str], rows: Iterable[Iterable[object]], cell: Callable[[object], str] = _text) -> str:
    """An HTML table; each cell is turned into HTML by `cell` (default: its text, escaped)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def img(path: Path, alt: str) -> str:
    """The PNG at `path` as an <img> whose source is the file itself (base64), so the page travels alone."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def page(title: str, sections_html: Iterable[str]) -> str:
    """A whole HTML document: `title` as its title and first heading, then the sections in order."""
    body = "".join(sections_html)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>\n"
    )
