"""Sweep-level progress through Hydra's callback mechanism (configured under hydra.callbacks).

A multirun logs `job i/N` with the sweep's elapsed time and ETA as each job starts, and ends with
a compact table of its jobs. Works with any launcher: each finished job appends one JSON line to
<sweep dir>/progress.jsonl, so jobs running in parallel processes (joblib, SLURM) are counted too.
Imports no torch: Hydra instantiates callbacks before any job starts.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("gapbench")
PROGRESS_FILE = "progress.jsonl"
SWEEP_FILE = "sweep.json"
# Hydra's launchers log "Launching N jobs" and one "#i : overrides" line per job; `job i/N` replaces them
LAUNCHER_LOGGERS = ("hydra._internal.core_plugins.basic_launcher", "hydra_plugins.hydra_joblib_launcher.joblib_launcher",
                    "hydra_plugins.hydra_joblib_launcher._core", "hydra_plugins.hydra_submitit_launcher.submitit_launcher")
TABLE_COLUMNS = ["job", "task", "cell", "gap", "seed", "status", "score", "baseline", "steps", "wall_s"]

_last_row: dict[str, Any] | None = None


def job_finished(row: dict[str, Any] | None) -> None:
    """The task function hands its job's row here; on_job_end (same process) records it."""
    global _last_row
    _last_row = row


def _rank() -> int:
    """This process's rank in a multi-process (DDP) job under SLURM; 0 otherwise."""
    return int(os.environ.get("SLURM_PROCID") or 0)


def count_jobs(config: DictConfig) -> int | None:
    """Jobs of this multirun: the product of its swept values (command line and hydra.sweeper.params),
    or the sweeper's n_trials (Optuna, Ax). None where the sweeper decides at run time."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweeper = config.hydra.sweeper
    if sweeper.get("n_trials"):
        return int(sweeper.n_trials)
    if not str(sweeper.get("_target_", "")).endswith("basic_sweeper.BasicSweeper"):
        return None  # e.g. hydra/sweeper=horizon: each round's gaps depend on the last round's results
    overrides = list(config.hydra.overrides.task)
    parsed = OverridesParser.create().parse_overrides(overrides)
    given = {o.get_key_element().lstrip("+~") for o in parsed}
    params = sweeper.get("params") or {}
    extra = [f"{k}={v}" for k, v in params.items() if k not in given]
    total = 1
    for o in parsed + (OverridesParser.create().parse_overrides(extra) if extra else []):
        if o.is_sweep_override():
            if o.is_discrete_sweep():
                total *= len(list(o.sweep_string_iterator()))
            else:
                return None  # range/interval sweeps: count unknown to us
    return total


def swept_keys(config: DictConfig) -> list[str]:
    """The keys a multirun sweeps: its command line's sweep overrides and hydra.sweeper.params
    (from the multirun's config: inside a job, hydra.overrides.task holds that job's values)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = config.hydra.sweeper.get("params") or {}
    parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    swept = [o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()] + list(params)
    if _horizon(config):
        swept.append("gap")  # the horizon sweeper chooses each job's gap
    return list(dict.fromkeys(swept))


def sweep_name(config: DictConfig) -> str:
    """A readable name for a multirun: the experiment's name, else the keys it sweeps (e.g. `cell-gap`)."""
    choice = config.hydra.runtime.choices.get("experiment")
    if choice:
        return str(choice)
    return "-".join(k.replace("/", ".") for k in swept_keys(config) if k != "gap" or not _horizon(config)) \
        or ("horizon" if _horizon(config) else "multirun")


def _horizon(config: DictConfig) -> bool:
    return str(config.hydra.sweeper.get("_target_", "")).endswith("HorizonSweeper")


def sweep_id(config: DictConfig, hydra: DictConfig | None = None) -> str:
    """The one id of a sweep (or single run): its rows' sweep_id, its W&B group, its horizons file
    (results_dir/horizons/<id>.json) and what every tool's --sweep takes. `sweep_id=NAME` if given,
    else the sweep's name (experiment or swept keys) and launch time, e.g. `cell-seed_2026-12-04_13-53-24`.
    `hydra`: the Hydra config node when `config` has none (inside a job, HydraConfig.get())."""
    if config.get("sweep_id"):
        return str(config.sweep_id)
    hc = hydra if hydra is not None else config.hydra
    folder = Path(hc.sweep.dir if hc.mode.name == "MULTIRUN" else hc.run.dir)
    name = sweep_info(folder).get("name") or hc.runtime.choices.get("experiment") or "run"
    return f"{name}_{folder.name}"


def sweep_info(sweep_dir: str | Path) -> dict[str, Any]:
    """What on_multirun_start recorded in the sweep's folder (name, swept keys, jobs); {} if nothing."""
    try:
        return json.loads((Path(sweep_dir) / SWEEP_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


def read_progress(sweep_dir: Path) -> list[dict[str, Any]]:
    path = Path(sweep_dir) / PROGRESS_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line cut by a crash
            continue
    return rows


def table(rows: list[dict[str, Any]], swept: list[str] = ()) -> str:
    """The sweep's jobs: every swept key (columns after seed), status ("skipped" where a finished
    row was reused, its time then the time it took when it ran), score, baseline, steps, time."""
    from tabulate import tabulate

    def cell(key, value):
        if isinstance(value, float):
            return _clock(value) if key == "wall_s" else f"{value:.4g}"
        return "" if value is None else value

    extra = [k for k in swept if k not in TABLE_COLUMNS]
    columns = TABLE_COLUMNS[:5] + extra + TABLE_COLUMNS[5:]
    body = [[cell(k, r.get("swept", {}).get(k) if k in extra else r.get(k)) for k in columns]
            for r in sorted(rows, key=lambda r: r["job"])]
    headers = [c if c != "wall_s" else "time" for c in columns]
    return tabulate(body, headers=headers, tablefmt="simple", disable_numparse=True)


class SweepProgress(Callback):
    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self.total: int | None = None
        self.swept: list[str] = []
        self.started = time.time()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()
        try:
            self.total = count_jobs(config)
        except Exception:  # a sweeper we do not know: progress without N
            self.total = None
        if not self.verbose:
            for name in LAUNCHER_LOGGERS:
                logging.getLogger(name).setLevel(logging.WARNING)
        self.swept = swept_keys(config)
        info = {"name": sweep_name(config), "swept": self.swept, "jobs": self.total, "started": self.started}
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / SWEEP_FILE).write_text(json.dumps(info))
        jobs = f"{self.total} job{'s' if self.total != 1 else ''}" if self.total else \
            "jobs chosen as it runs" if _horizon(config) else "jobs counted as they run"
        log.info("sweep %s: %s -> %s", sweep_id(config), jobs, sweep_dir)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode.name != "MULTIRUN" or _rank() != 0:
            return
        if not self.verbose:  # a joblib/submitit worker process: its launcher logger too
            for name in LAUNCHER_LOGGERS:
                logging.getLogger(name).setLevel(logging.WARNING)
        done = len(read_progress(config.hydra.sweep.dir))
        elapsed = time.time() - self.started
        eta = elapsed / done * ((self.total or done) - done) if done else float("nan")
        label = " ".join(o for o in config.hydra.overrides.task if o.split("=")[0].lstrip("+~") in self.swept)
        log.info("job %s  %s  (sweep: %d done, %s elapsed%s)",
                 f"{config.hydra.job.num + 1}/{self.total}" if self.total else config.hydra.job.num + 1,
                 label or "the default config", done, _clock(elapsed), f", ETA {_clock(eta)}" if self.total else "")

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        global _last_row
        if config.hydra.mode.name != "MULTIRUN" or _rank() != 0:  # DDP: one line per job, from rank 0
            return
        row, _last_row = _last_row or {}, None
        failed = job_return.status == JobStatus.FAILED
        status = "failed" if failed else row.get("status", "?")
        entry = {"job": config.hydra.job.num + 1, "status": f"skipped ({status})" if row.get("skipped") else status,
                 **{k: row.get(k) for k in TABLE_COLUMNS if k not in ("job", "status")}, "run_id": row.get("run_id"),
                 "swept": {k: v for k, _, v in (o.lstrip("+~").partition("=")
                                                  for o in OmegaConf.select(config, "hydra.overrides.task", default=[]))
                           if k in self.swept and k not in TABLE_COLUMNS}}
        # a job that failed, or ran elsewhere, has no (full) row: what it is comes from its config
        known = {"cell": OmegaConf.select(config, "cell.name"), "task": OmegaConf.select(config, "task.name"),
                 "gap": config.get("gap"), "seed": config.get("seed")}
        entry.update({k: v for k, v in known.items() if entry.get(k) is None})
        path = Path(config.hydra.sweep.dir) / PROGRESS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:  # one short line per write: O_APPEND keeps parallel writers whole
            f.write(json.dumps(entry, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        rows = read_progress(config.hydra.sweep.dir)
        if not rows:
            return
        counts = {}
        for r in rows:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        log.info("sweep done: %s jobs in %s (%s)\n%s", f"{len(rows)}/{self.total}" if self.total else len(rows),
                 _clock(time.time() - self.started), summary, table(rows, self.swept))


NAMED_ELSEWHERE = {"cell", "task", "gap", "seed", "results_dir", "sweep_id", "rerun", "threads", "progress",
                   "checkpoint_every", "verbose", "logger", "wandb.mode", "wandb.project", "wandb.entity"}


def run_name(cfg: DictConfig, run_id: str) -> str:
    """A W&B run name that tells conditions apart: task-cell-gapG-sS, then every other key this job
    sets on its command line (e.g. trainer.max_steps=5000), then the config hash (run_id's tail)."""
    base, chash = run_id.rsplit("-", 1)
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = [o.lstrip("+~") for o in HydraConfig.get().overrides.task]
    except ValueError:  # not launched through Hydra
        overrides = []
    extra = [o for o in overrides if o.split("=")[0] not in NAMED_ELSEWHERE and not o.startswith("hydra")]
    return " ".join([base, *extra, f"#{chash[:6]}"])
