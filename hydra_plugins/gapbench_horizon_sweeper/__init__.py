"""gapbench's memory-horizon search as a Hydra sweeper plugin: `python run.py -m hydra/sweeper=horizon ...`."""
