"""A small library for pages and pictures built from results; it knows nothing of runs or analyses.

- `html.py`: `table`, `img`, `page` (one self-contained HTML file, figures inlined).
- `blocks.py`: text written both as Markdown and as HTML (paragraphs and tables).
- `figures.py`: `pyplot`, `save_figure`, `save_png` (pixels as they are), and the generic
  figures (training curves, confusion matrix, image grid).
- `evaluation.py`: the files of a classification evaluation (JSON, confusion matrix, mistakes).

The report of a run (report.html) and its model card are assembled in `cnnlab.publish`.
"""

from cnnlab.report.blocks import Block, blocks_html, blocks_markdown, table_block
from cnnlab.report.evaluation import save_evaluation
from cnnlab.report.figures import confusion_matrix, image_grid, pyplot, save_figure, save_png, training_curves
from cnnlab.report.html import img, page, table

__all__ = [
    "Block", "blocks_html", "blocks_markdown", "confusion_matrix", "image_grid", "img", "page", "pyplot",
    "save_evaluation", "save_figure", "save_png", "table", "table_block", "training_curves",
]
