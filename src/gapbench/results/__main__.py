"""python -m gapbench.results ls|show|export|compare (see gapbench/results/cli.py)."""
import sys

from gapbench.results.cli import main

sys.exit(main())
