"""Commands of issue #4 (being written)."""
