"""Text that is written both as Markdown and as HTML: a list of blocks, each a paragraph or a table.

A paragraph may use the two Markdown marks **bold** and `code`; `blocks_markdown` keeps them,
`blocks_html` turns them into <b> and <code>. The model card is written this way, so that
MODEL_CARD.md and MODEL_CARD.html say the same thing.

    blocks = ["**Groups.** The five worst:", table_block(["group", "accuracy"], [["dark", "71.0%"]])]
"""

from __future__ import annotations

import re
from html import escape
from typing import Any

from cnnlab.report.html import table

Block = str | tuple[str, list[str], list[list[Any]]]  # a paragraph, or ("table", header, rows)


def table_block(header: list[str], rows: list[list[Any]]) -> Block:
    return ("table", header, rows)


def inline(text: object) -> str:
    """The two Markdown marks the blocks use, **bold** and `code`, as HTML (the rest escaped)."""
    html = escape(str(text))
    html = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", html)


def blocks_html(blocks: list[Block]) -> str:
    return "".join(f"<p>{inline(b)}</p>" if isinstance(b, str) else table(b[1], b[2], cell=inline) for b in blocks)


def blocks_markdown(blocks: list[Block]) -> list[str]:
    """The blocks as Markdown lines, each block followed by an empty line."""
    lines: list[str] = []
    for b in blocks:
        if isinstance(b, str):
            lines += [b, ""]
            continue
        _, header, rows = b
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
        lines.append("")
    return lines
