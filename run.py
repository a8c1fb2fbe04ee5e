"""gapbench entry point: `python run.py [-m] key=value ...` (see `python run.py --help`)."""
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from gapbench.job import run_job
from gapbench.preflight import preflight
from gapbench.signals import forward_to_workers
from gapbench.tasks import TaskError
from gapbench.validate import ConfigError

CONF = Path(__file__).resolve().parent / "conf"


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="config")
def main(cfg: DictConfig) -> float | None:
    try:
        row = run_job(cfg)
    except (ConfigError, TaskError) as e:  # caught again here for jobs preflight could not see (e.g. memory)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    return row.get("score")  # the objective for Hydra sweepers such as Optuna


if __name__ == "__main__":
    preflight(sys.argv[1:], CONF)
    forward_to_workers()  # SIGTERM/SIGINT stop a sweep's worker processes with it
    main()
