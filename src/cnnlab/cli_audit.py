"""Commands of issue #6 (being written)."""
