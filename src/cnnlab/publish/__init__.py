"""What a run publishes, assembled from the results of every analysis (it sits above them all).

- `report.py`: report.html, whose `SECTIONS` lists every section in page order.
- `card.py`: the model card, MODEL_CARD.md and MODEL_CARD.html (Mitchell et al. 2019).
- `evaluation.py`: `cnnlab evaluate`'s files in the run, and reading them back.

    from cnnlab.publish import write_report
    write_report(cnnlab.Run.load("runs/lenet5"))  # -> runs/lenet5/report.html
"""

from cnnlab.publish.card import write_card
from cnnlab.publish.evaluation import evaluate_run, evaluation_dir, evaluation_result
from cnnlab.publish.report import SECTIONS, write_report

__all__ = ["SECTIONS", "evaluate_run", "evaluation_dir", "evaluation_result", "write_card", "write_report"]
