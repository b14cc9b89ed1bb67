"""A compressed run beside its parent: test accuracy, parameters, FLOPs, weights on disk, latency.

Saved as RUN/compress.json. Latency is measured here and now (median of forward passes on this
machine, at its current load): compare the two numbers of one report, not numbers of two days.
"""

from __future__ import annotations

from typing import Any

from cnnlab.compress import derive
from cnnlab.compress.prune import sparsity
from cnnlab.run import WEIGHTS, Run


def test_accuracy(run: Run) -> float | None:
    test = run.test_result()
    return None if test is None else test.get("test_acc")


def compress_report(parent: Run, run: Run) -> dict[str, Any]:
    derived = run.provenance["derived"]
    shape = tuple(parent.input_shape)
    size = {"parent": derive.size_of(parent.model, shape, parent.path / WEIGHTS),
            "derived": derive.size_of(run.model, shape, run.path / WEIGHTS)}
    accuracy = {"parent": test_accuracy(parent), "derived": test_accuracy(run)}
    method = derived["method"]
    if method == "prune":
        method += " (channels)" if derived["structured"] else f" (weights, {sparsity(run.model):.0%} of them now 0)"
    drop = None if None in accuracy.values() else 100 * (accuracy["parent"] - accuracy["derived"])  # type: ignore[operator]
    ratio = (size["derived"]["weights_bytes"] or 0) / max(size["parent"]["weights_bytes"] or 1, 1)
    speed = size["parent"]["latency_ms_batch1"] / max(size["derived"]["latency_ms_batch1"], 1e-9)
    summary = (f"{method}: test accuracy {'n/a' if drop is None else f'{-drop:+.2f} points'}, weights on disk "
               f"{ratio:.2f}x, FLOPs {size['derived']['flops_per_image'] / max(size['parent']['flops_per_image'], 1):.2f}x, "
               f"batch-1 latency {1 / speed:.2f}x the parent's")
    report = {"method": method, "parent": str(parent.path), "run": str(run.path), "derived": derived,
              "accuracy": accuracy, "accuracy_drop_points": drop, "weights_ratio": ratio, "size": size, "summary": summary}
    run.save_result("compress", report)
    return report
