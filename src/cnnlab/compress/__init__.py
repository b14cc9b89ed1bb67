"""Smaller models from trained runs: a class hierarchy (CNN Tree), pruning, int8 quantization, distillation."""
