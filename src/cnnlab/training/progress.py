"""What a user watches while a run trains: a live bar on a terminal, a line per epoch always.

Everything goes to stderr, so `--json` output on stdout stays one clean document.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainingProgress:
    def __init__(self, total_steps: int, done_steps: int, quiet: bool = False) -> None:
        self.console = Console(stderr=True, quiet=quiet, soft_wrap=True)
        self.progress = Progress(
            TextColumn("[bold]{task.fields[epoch]}"),
            BarColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            disable=quiet or not self.console.is_terminal,
        )
        self.task = self.progress.add_task("train", total=total_steps, completed=done_steps, epoch="", stats="")

    def __enter__(self) -> TrainingProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def step(self, advance: int, epoch: str, stats: str | None = None) -> None:
        fields: dict[str, Any] = {"epoch": epoch}
        if stats is not None:
            fields["stats"] = stats
        self.progress.update(self.task, advance=advance, **fields)

    def epoch_line(self, record: dict[str, Any]) -> None:
        """`epoch   3  train loss 0.31 acc 0.89  val loss 0.35 acc 0.88  10,236 img/s  5.5s`:
        the task's own metrics, in the order the record holds them."""
        train = " ".join(f"{k[6:]} {v:.4f}" for k, v in record.items() if k.startswith("train_") and k != "train_seconds")
        val = " ".join(f"{k[4:]} {v:.4f}" for k, v in record.items() if k.startswith("val_"))
        self.console.print(
            f"epoch {record['epoch']:>3}  train {train}" + (f"  val {val}" if val else "")
            + f"  {record['images_per_s']:,.0f} img/s  {record['epoch_seconds']:.1f}s"
        )

    def print(self, text: str) -> None:
        self.console.print(text)
