"""report.html's Audit section: the bias, privacy, energy and size records the run holds, drawn
as the model card draws them (the card itself: `cnnlab card RUN`)."""

from __future__ import annotations

from cnnlab import energy
from cnnlab.audit.card import bias_blocks, blocks_html, cost_blocks, privacy_blocks
from cnnlab.audit.runs import read_audit
from cnnlab.run import Run


def audit_section(run: Run) -> str | None:
    measured = any(read_audit(run.path, name) for name in ("bias", "privacy", "size"))
    if not measured and not any("energy_kwh" in r for r in energy.read(run.path)):
        return None
    blocks = bias_blocks(run) + privacy_blocks(run) + cost_blocks(run)
    return "<h2>Audit: groups, privacy, energy and size</h2>" + blocks_html(blocks)
