"""The audits applied to a run directory: load what they need, compute, save RUN/audit/*.json.

    RUN/audit/bias.json      per-group and per-class accuracy   (`cnnlab audit bias RUN`)
    RUN/audit/privacy.json   membership inference               (`cnnlab audit privacy RUN`)
    RUN/audit/size.json      parameters, FLOPs, latency          (`cnnlab compare`, `cnnlab card`)

`read_audit` reads them back for the report and the model card, which never recompute them.
"""

from __future__ import annotations

from typing import Any

import torch

from cnnlab import energy
from cnnlab.errors import CnnlabError
from cnnlab.run import WEIGHTS, Run

AUDIT = "audit"


def read_audit(run: Run, name: str) -> dict[str, Any] | None:
    """RUN/audit/<name>.json ('bias', 'privacy' or 'size'), or None if that audit never ran."""
    return run.results(f"{AUDIT}/{name}")


def _save(run: Run, name: str, doc: dict[str, Any]) -> dict[str, Any]:
    run.save_result(f"{AUDIT}/{name}", doc)
    return doc


def bias_run(run: Run, groups: str | None = None, split: str = "test") -> dict[str, Any]:
    """Per-group accuracy of the run on `split`; `groups` as in `cnnlab.data.groups.groups_for`."""
    from cnnlab.audit.bias import group_metrics
    from cnnlab.data.groups import groups_for
    from cnnlab.tasks.classify import predict_logits

    run.require_classifier("a bias audit (accuracy per group)")
    data = run.load_data()
    part = run.split(data, split)
    ids, names, described = groups_for(groups, data.name, data.classes, part.x, part.y)
    with energy.track(run.path, "audit bias"):
        pred = predict_logits(run.model, part.x).argmax(1)
    result = group_metrics(part.y, pred, ids, names, data.classes, described)
    return _save(run, "bias", {"split": split, "n": len(part), "mitigate": run.config.mitigate, **result.to_dict()})


def privacy_run(run: Run, n: int = 2000, reference: Run | None = None, seed: int = 0) -> dict[str, Any]:
    """Membership inference with n members (training split) and n non-members (test split)."""
    from cnnlab.audit.privacy import membership_inference

    run.require_classifier("a membership-inference audit (per-image cross-entropy of the true label)")
    data = run.load_data()
    n = min(n, len(data.train), len(data.test))
    if n < 50:
        raise CnnlabError(f"{data.name} has too few images ({n}) for a membership-inference audit; it needs 50 of each.")
    g = torch.Generator().manual_seed(seed)
    m = torch.randperm(len(data.train), generator=g)[:n]
    o = torch.randperm(len(data.test), generator=g)[:n]
    with energy.track(run.path, "audit privacy"):
        result = membership_inference(
            run.model, (data.train.x[m], data.train.y[m]), (data.test.x[o], data.test.y[o]),
            reference.model if reference is not None else None,
        )
    test = run.test_result() or {}
    epochs = [r for r in run.metrics() if r.get("event") == "epoch"]
    doc = {
        **result.to_dict(),
        "reference": str(reference.path) if reference is not None else None,
        "train_acc": epochs[-1]["train_acc"] if epochs else None,
        "test_acc": test.get("test_acc"),
        "dp": run.provenance.get("privacy"),
    }
    return _save(run, "privacy", doc)


def size_run(run: Run) -> dict[str, Any]:
    from cnnlab.audit.size import measure_size

    size = measure_size(run.model, run.input_shape, run.path / WEIGHTS)
    return _save(run, "size", {"model": run.config.model, **size.to_dict()})
