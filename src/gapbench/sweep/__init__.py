"""Sweep-level pieces: the progress line and final table, the horizon search."""
