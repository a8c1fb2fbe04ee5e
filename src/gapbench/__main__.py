"""gapbench's command: `python -m gapbench [-m] key=value ...`, also `python run.py ...` in a checkout
(see `--help`). Works from any folder and any install: the configs come with the package."""
import os
import sys

# Before torch starts: torch's OpenMP threads otherwise spin-wait for each other, and a 2-thread
# job runs ~7x slower while any other process is busy on the CPU (docs/performance.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# A W&B service inherited from the launching process (a notebook, a test runner) would outlive this
# job: after a SIGKILL it keeps holding the job's W&B run id, and the rerun could not resume it.
os.environ.pop("WANDB_SERVICE", None)

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

import gapbench.config.help  # noqa: E402,F401  (resolvers used by `--help`)
import gapbench.sweep.slurm  # noqa: E402,F401  (resolver used by hydra/launcher=slurm)
from gapbench.config import CONF, expand_user_paths  # noqa: E402


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="config")
def main(cfg: DictConfig) -> float | None:
    # imported here, not above: torch, Lightning and W&B take seconds, and `--help` needs none of them
    from gapbench.quiet import quiet

    quiet(cfg.verbose, wandb=cfg.logger.name == "wandb")
    from gapbench.sweep import progress as sweep_progress
    from gapbench.train.job import run_job
    from gapbench.tasks import TaskError
    from gapbench.config.validate import ConfigError

    try:
        if cfg.eval_only:
            from gapbench.train.evaluate import run_eval

            return run_eval(cfg)["score"]
        row = run_job(cfg)
    except (ConfigError, TaskError) as e:  # caught again here for jobs preflight could not see (e.g. memory)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:  # noqa: BLE001 - a full disk: one line, not Lightning's traceback
        from gapbench.paths import DiskFull, is_disk_full

        if not is_disk_full(e):
            raise
        print(f"error: {e if isinstance(e, DiskFull) else f'disk full: {e}'}", file=sys.stderr)
        sys.exit(1)
    sweep_progress.job_finished(row)  # for the sweep's progress line and final table
    return row.get("score")  # the objective for Hydra sweepers such as Optuna


def cli() -> None:
    sys.argv[1:] = expand_user_paths(sys.argv[1:])  # before Hydra makes its run folder under results_dir
    if sys.argv[1:] in (["--help"], ["-h"]):  # Hydra's help lists every group of its own first: ~3 s
        print(gapbench.config.help.render())
        sys.exit(0)
    from gapbench.config.preflight import preflight

    preflight(sys.argv[1:], CONF)
    from gapbench.train.signals import forward_to_workers

    forward_to_workers()  # SIGTERM/SIGINT stop a sweep's worker processes with it
    main()


if __name__ == "__main__":
    cli()
