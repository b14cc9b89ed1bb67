"""cnnlab.report: the small library pages and pictures are made of (tables, images, pages, blocks)."""

from __future__ import annotations

import base64
from pathlib import Path

import torch

from cnnlab.report import blocks_html, blocks_markdown, image_grid, img, page, pyplot, save_figure, table, table_block


def test_table_escapes_every_cell_unless_told_otherwise() -> None:
    html = table(["name", "<i>value</i>"], [["a & b", "<script>"], [1, 2.5]])
    assert html == ("<table><thead><tr><th>name</th><th>&lt;i&gt;value&lt;/i&gt;</th></tr></thead><tbody>"
                    "<tr><td>a &amp; b</td><td>&lt;script&gt;</td></tr><tr><td>1</td><td>2.5</td></tr></tbody></table>")
    assert table(["x"], [["raw"]], cell=lambda c: f"<b>{c}</b>") .endswith("<tr><td><b>raw</b></td></tr></tbody></table>")


def test_img_carries_the_file_itself(tmp_path: Path) -> None:
    png = image_grid(torch.rand(3, 1, 8, 8), ["a", "b", "c"], tmp_path / "grid.png")
    html = img(png, 'three "images"')
    assert html.startswith('<img alt="three &quot;images&quot;" src="data:image/png;base64,')
    assert base64.b64decode(html.split("base64,")[1].rstrip('">')) == png.read_bytes()


def test_save_figure_writes_a_png_and_makes_its_folder(tmp_path: Path) -> None:
    fig, ax = pyplot().subplots()
    ax.plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "new" / "line.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not pyplot().get_fignums()  # closed: a long report does not pile up open figures


def test_page_is_one_document_with_its_sections_in_order() -> None:
    html = page("cnnlab report: a<b", ["<h2>one</h2>", "<h2>two</h2>"])
    assert html.startswith("<!doctype html>") and html.endswith("</body></html>\n")
    assert "<title>cnnlab report: a&lt;b</title>" in html and "<h1>cnnlab report: a&lt;b</h1><h2>one</h2><h2>two</h2>" in html


def test_blocks_say_the_same_in_markdown_and_html() -> None:
    blocks = ["**Groups.** see `cnnlab audit bias`:", table_block(["group", "acc"], [["a|b", "**1**"]])]
    assert blocks_markdown(blocks) == [
        "**Groups.** see `cnnlab audit bias`:", "", "| group | acc |", "|---|---|", "| a\\|b | **1** |", "",
    ]
    assert blocks_html(blocks) == (
        "<p><b>Groups.</b> see <code>cnnlab audit bias</code>:</p><table><thead><tr><th>group</th><th>acc</th></tr>"
        "</thead><tbody><tr><td>a|b</td><td><b>1</b></td></tr></tbody></table>"
    )
