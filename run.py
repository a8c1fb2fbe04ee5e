"""gapbench entry point: `python run.py [-m] key=value ...` (see `python run.py --help`), the same
command as `python -m gapbench` (src/gapbench/__main__.py)."""
from gapbench.__main__ import cli, main  # noqa: F401  (main: Hydra's entry, for tests that call it in-process)

if __name__ == "__main__":
    cli()
