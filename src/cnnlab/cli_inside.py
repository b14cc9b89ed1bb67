"""Commands of issue #3 (being written)."""
