"""The report of a run (report.html) and the files of an evaluation."""

from cnnlab.report.evaluation import save_evaluation
from cnnlab.report.html import SECTIONS, evaluation_dir, write_report

__all__ = ["SECTIONS", "evaluation_dir", "save_evaluation", "write_report"]
