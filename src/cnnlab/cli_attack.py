"""Commands of issue #5 (being written)."""
