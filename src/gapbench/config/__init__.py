"""Checks before any job (validate, preflight), what makes a condition, and `--help`.

CONF is the Hydra config tree: the repository's conf/, shipped in a wheel as the package data
`gapbench.conf`, so `python -m gapbench` finds it from any folder and any kind of install.
"""
from importlib.util import find_spec
from pathlib import Path

CONF = Path(find_spec("gapbench.conf").submodule_search_locations[0]).resolve()  # located, not imported
