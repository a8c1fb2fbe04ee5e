"""Hydra's submitit SLURM launcher as gapbench uses it (`hydra/launcher=slurm`): it waits for every
job of the sweep, reports each failed job in one line (the job's own reason and its log file) and
shows submitit's repeated `sacct` warning once (every one with `verbose=true`). Launcher values that
cannot work are refused before submission (`gapbench.sweep.slurm.launcher_problem`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException
from hydra_plugins.hydra_submitit_launcher import submitit_launcher

from gapbench.sweep.slurm import failure_reason, launcher_problem

log = logging.getLogger("gapbench")


class JobsFailed(CompactHydraException):
    """Raised (by Hydra's sweeper) once every job of the sweep has ended and some failed."""


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    """Hydra's submitit SLURM launcher; see the module docstring for what it adds."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        _quiet_sacct(bool(self.config.get("verbose")))
        problem = launcher_problem(self.params)
        if problem:
            raise JobsFailed(problem)
        jobs: list[Any] = []
        real_map_array = submitit.AutoExecutor.map_array

        def map_array(executor, fn, *iterables):  # keep the submitted jobs; results are collected below
            jobs.extend(real_map_array(executor, fn, *iterables))
            return [_Deferred() for _ in jobs]

        submitit.AutoExecutor.map_array = map_array
        try:
            super().launch(job_overrides, initial_job_idx)
        finally:
            submitit.AutoExecutor.map_array = real_map_array
        returns, failed = [], []
        for num, (job, overrides) in enumerate(zip(jobs, job_overrides), start=initial_job_idx + 1):
            ret, reason = self._result(job)
            if reason is not None:
                log_file = Path(job.paths.stdout)
                failed.append(f"job {num} ({job.job_id})")
                log.error("job %d failed: %s (%s); log: %s", num, " ".join(overrides), reason, log_file)
                ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
            returns.append(ret)
        if failed:
            error = JobsFailed(f"{len(failed)} of {len(jobs)} jobs failed: {', '.join(failed)} (why: the lines above)")
            for ret in returns:
                if ret.status == JobStatus.FAILED:
                    ret._return_value = error
        return returns

    @staticmethod
    def _result(job) -> tuple[JobReturn | None, str | None]:
        """The job's JobReturn, or (None, one-line reason) when it failed."""
        from submitit.core.utils import UncompletedJobError

        try:
            ret = job.results()[0]
        except UncompletedJobError:
            out, err = _read(Path(job.paths.stdout)), _read(Path(job.paths.stderr))
            reason, state = failure_reason(out, err), job.state
            return None, f"{reason} (SLURM: {state})" if reason else f"ended {state} without a result"
        if ret.status == JobStatus.FAILED:
            e = ret._return_value
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            return None, f"{type(e).__name__}: {first}".rstrip(": ")
        return ret, None


class _Deferred:
    """What the parent launcher's `[j.results()[0] for j in jobs]` gets; results are read later."""

    def results(self) -> list[None]:
        return [None]


class _Once(logging.Filter):
    """Lets a message through the first time only."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix, self.seen = prefix, False

    def filter(self, record: logging.LogRecord) -> bool:
        if self.prefix not in record.getMessage():
            return True
        if self.seen:
            return False
        self.seen = True
        return True


def _quiet_sacct(verbose: bool) -> None:
    """submitit logs its `sacct` failures (a cluster without accounting) at every status poll, each
    through its own two handlers and Hydra's: shown once, through Hydra's handler, unless verbose."""
    if verbose:
        return
    logger = logging.getLogger("submitit")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True
    if not any(isinstance(f, _Once) for f in logger.filters):
        logger.addFilter(_Once("Bypassing sacct error"))
