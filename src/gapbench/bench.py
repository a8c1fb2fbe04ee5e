"""`python -m gapbench.bench`, kept working: the module is gapbench.perf.bench."""
from gapbench.perf.bench import *  # noqa: F401,F403
from gapbench.perf.bench import main

if __name__ == "__main__":
    main()
