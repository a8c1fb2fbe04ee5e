"""Checks before any job (validate, preflight), what makes a condition, and `--help`.

CONF is the Hydra config tree: the repository's conf/, shipped in a wheel as the package data
`gapbench.conf`, so `python -m gapbench` finds it from any folder and any kind of install.
"""
import os
from importlib.util import find_spec
from pathlib import Path

CONF = Path(find_spec("gapbench.conf").submodule_search_locations[0]).resolve()  # located, not imported
USER_PATHS = ("results_dir", "task.path", "ckpt_path")  # keys that hold a path the user types


def expand_user_paths(overrides: list[str]) -> list[str]:
    """Command-line overrides with `~` and $VARIABLES expanded in the values of USER_PATHS. A shell
    leaves `key=~/x` alone (the `~` does not start the word), and Hydra would make a folder named `~`."""
    out = []
    for arg in overrides:
        key, eq, value = arg.partition("=")
        if eq and key.lstrip("+~") in USER_PATHS:
            arg = f"{key}={os.path.expandvars(os.path.expanduser(value))}"
        out.append(arg)
    return out
