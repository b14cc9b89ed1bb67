"""Audit a run beyond accuracy: per-group errors, size and energy, privacy leakage, provenance,
and the model card that gathers them (Mitchell et al. 2019). Each module is one analysis: a
function over (model, data) -> result, plus what writes it into the run directory."""
