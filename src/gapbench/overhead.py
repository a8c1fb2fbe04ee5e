"""`python -m gapbench.overhead`, kept working: the module is gapbench.perf.overhead."""
from gapbench.perf.overhead import *  # noqa: F401,F403
from gapbench.perf.overhead import main

if __name__ == "__main__":
    main()
