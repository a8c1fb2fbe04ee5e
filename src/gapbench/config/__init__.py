"""Checks before any job (validate, preflight), what makes a condition, and `--help`."""
