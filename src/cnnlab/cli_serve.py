"""Commands of issue #8 (being written)."""
