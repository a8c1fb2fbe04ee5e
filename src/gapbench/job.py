"""One job: build the cell, task, model and trainer from a resolved config; fit; test; record one row."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import platform
import signal
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import to_absolute_path
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from gapbench import cells, jobstate, results, tasks
from gapbench.model import Diverged, GapModule, TaskData
from gapbench.probe import GradientProbe
from gapbench.signals import StopOnSignal, Stopped, StopRequest, refuse_if_stopping
from gapbench.tasks import Task, build_task
from gapbench.validate import ConfigError, check_config

log = logging.getLogger("gapbench")
# Lightning advertises its cloud logger on every Trainer: one line of noise per job in a sweep.
logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda record: "litlogger" not in record.getMessage())

# Keys that change how a job is shown or stored, never what it computes: left out of the config hash.
PRESENTATION_KEYS = {"results_dir", "sweep_id", "rerun", "threads", "progress", "checkpoint_every", "logger", "wandb"}
PROGRESS_EVERY = 10  # progress=true: redraw the bar every 10 steps (a redraw costs ~0.2 ms on this CPU)
PRESENTATION_TRAINER_KEYS = {"log_every_n_steps", "enable_model_summary", "enable_progress_bar", "num_sanity_val_steps"}


def config_hash(config: dict[str, Any]) -> str:
    ident = {k: v for k, v in config.items() if k not in PRESENTATION_KEYS and k != "hydra"}
    ident["trainer"] = {k: v for k, v in config.get("trainer", {}).items() if k not in PRESENTATION_TRAINER_KEYS}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _sweep_id(cfg: DictConfig) -> str:
    if cfg.sweep_id:
        return str(cfg.sweep_id)
    try:
        hc = HydraConfig.get()
        return Path(hc.sweep.dir if hc.mode.name == "MULTIRUN" else hc.run.dir).name
    except ValueError:  # not launched through Hydra (tests, notebooks)
        return dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def make_task(cfg: DictConfig) -> Task:
    opts = tasks.options(OmegaConf.to_container(cfg.task, resolve=True))
    return build_task(cfg.task.name, cfg.gap, cfg.seed, cfg.task.batch_size, **opts)


def make_model(cfg: DictConfig, task: Task) -> torch.nn.Module:
    """The task's model around the configured cell; seed torch before calling."""
    opts = cells.options(OmegaConf.to_container(cfg.cell, resolve=True))
    try:
        return task.build_model(lambda n_in: cells.build(cfg.cell.name, n_in, cfg.cell.hidden_size, **opts),
                                cfg.cell.hidden_size)
    except TypeError as e:
        raise ConfigError(f"cell {cfg.cell.name}: {e}") from None


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _threads(cfg: DictConfig) -> int:
    if cfg.threads:
        return int(cfg.threads)
    if os.environ.get("SLURM_CPUS_PER_TASK"):  # submitit/SLURM: the allocation is the budget
        return int(os.environ["SLURM_CPUS_PER_TASK"])
    cores = cpu_cores()
    try:
        jobs = int(HydraConfig.get().launcher.get("n_jobs") or 1)
    except (ValueError, AttributeError):
        jobs = 1
    jobs = cores if jobs < 0 else jobs  # joblib: n_jobs=-1 means one job per core
    return max(1, cores // max(1, jobs))


def _device_name(trainer: L.Trainer) -> str:
    if trainer.strategy.root_device.type == "cuda":
        return torch.cuda.get_device_name(trainer.strategy.root_device)
    return f"cpu {platform.machine()} ({torch.get_num_threads()} threads)"


def _wandb_env(results_dir: Path) -> None:
    base = results_dir / "wandb"
    for var, sub in [("WANDB_DIR", ""), ("WANDB_CACHE_DIR", "cache"), ("WANDB_CONFIG_DIR", "config"),
                     ("WANDB_DATA_DIR", "data"), ("WANDB_ARTIFACT_DIR", "artifacts")]:
        os.environ.setdefault(var, str(base / sub))
    base.mkdir(parents=True, exist_ok=True)


def _make_logger(cfg, config, run_id, sweep_id, results_dir: Path, job_dir: Path):
    if cfg.logger.name == "none":
        return False
    if cfg.logger.name == "csv":
        from lightning.pytorch.loggers import CSVLogger
        return CSVLogger(save_dir=str(results_dir / "csv"), name=run_id, version=0)
    from lightning.pytorch.loggers import WandbLogger

    _wandb_env(results_dir)
    wandb_id = jobstate.wandb_run_id(job_dir)  # a resumed job continues the same W&B run
    if _rank() != 0:  # DDP: only rank 0 starts a W&B run; the others log nowhere
        return WandbLogger(id=wandb_id, project=cfg.wandb.project, save_dir=str(results_dir))
    run = _start_wandb(cfg.wandb.mode, results_dir, dict(
        project=cfg.wandb.project, entity=cfg.wandb.entity,
        name=f"{cfg.task.name}-{cfg.cell.name}-gap{cfg.gap}-s{cfg.seed}", id=wandb_id, resume="allow",
        group=sweep_id, job_type=cfg.task.name, dir=str(results_dir),
        tags=[cfg.task.name, cfg.cell.name, f"gap{cfg.gap}"],
        config={"cell": cfg.cell.name, "task": cfg.task.name, "gap": cfg.gap, "seed": cfg.seed,
                "run_id": run_id, "sweep_id": sweep_id, "config": config},
    ))
    return WandbLogger(experiment=run, save_dir=str(results_dir))


WANDB_TIMEOUT_S = 15.0  # online W&B: how long to wait for the server before logging offline instead


def _wandb_reachable(timeout: float) -> str | None:
    """None if the W&B server answers HTTP at all, else why not."""
    import urllib.error
    import urllib.request

    url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    try:
        urllib.request.urlopen(url, timeout=timeout).close()
    except urllib.error.HTTPError:
        return None  # it answered
    except (OSError, ValueError) as e:
        return f"{url}: {getattr(e, 'reason', e)}"
    return None


def _start_wandb(mode: str, results_dir: Path, init: dict[str, Any]):
    """The job's W&B run. Online, an unreachable server costs at most ~WANDB_TIMEOUT_S and one line:
    the run is then logged offline (same id) for a later `wandb sync`, and the job goes on."""
    import wandb

    if mode != "online":
        return _init_when_free(wandb, dict(mode=mode, **init))
    timeout = float(os.environ.get("WANDB_INIT_TIMEOUT", WANDB_TIMEOUT_S))
    why = _wandb_reachable(timeout)
    if why is None:
        try:
            return wandb.init(mode="online", settings=wandb.Settings(init_timeout=timeout), **init)
        except Exception as e:  # noqa: BLE001 - any failure to start online W&B: fall back, keep training
            why = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            wandb.teardown()  # the failed online run still holds its id in W&B's service
    log.warning("W&B unreachable (%s); logging this run offline in %s; upload it later with `wandb sync`",
                why, results_dir / "wandb")
    return _init_when_free(wandb, dict(mode="offline", **init))


def _init_when_free(wandb, kwargs: dict[str, Any], wait_s: float = 60.0):
    """wandb.init; if the run id is still "in use" (the W&B service of a SIGKILLed earlier start of
    this job lives on until it notices), wait for it to let go rather than fail the job."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return wandb.init(**kwargs)
        except Exception as e:  # noqa: BLE001 - wandb raises its own ServerResponseError here
            if "in use" not in str(e) or time.monotonic() > deadline:
                raise
            wandb.teardown()
            time.sleep(2.0)


def _finished(done: dict[str, Any] | None) -> bool:
    return bool(done) and done.get("status") in ("finished", "diverged")


def _log_skip(done: dict[str, Any], results_dir: Path) -> dict[str, Any]:
    log.info("skip %s: already %s in %s (score %s=%s); rerun=true trains it again", done["run_id"], done["status"],
             results.run_path(results_dir, done["run_id"]), done.get("score_name"), done.get("score"))
    return done


def run_job(cfg: DictConfig, callbacks: list[L.Callback] = ()) -> dict[str, Any]:
    """One job's lifecycle: skip it if done; else hold its lock, train (resuming from its last
    checkpoint), and on SIGTERM/SIGINT stop at a step boundary with a checkpoint and exit 128+signal.
    `callbacks`: extra Lightning callbacks (the overhead benchmark's clock)."""
    refuse_if_stopping()
    check_config(cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    results_dir = Path(to_absolute_path(cfg.results_dir)).expanduser()
    chash = config_hash(config)
    run_id = f"{cfg.task.name}-{cfg.cell.name}-gap{cfg.gap}-s{cfg.seed}-{chash[:8]}"
    done = results.read_run(results_dir, run_id)
    if _finished(done) and not cfg.rerun:
        return _log_skip(done, results_dir)

    job_dir = results_dir / "jobs" / run_id
    # DDP: Lightning starts ranks 1.. inside rank 0's fit, which holds the lock; they join its job
    lock = jobstate.JobLock(job_dir) if _rank() == 0 else None
    if lock and not lock.acquire():
        log.warning("%s is running elsewhere (%s); skipped here", run_id, lock.describe_holder())
        return {"run_id": run_id, "status": "running elsewhere"}
    stop, row = StopRequest(), None
    try:
        with stop:
            done = results.read_run(results_dir, run_id)  # it may have finished while another process held it
            if _finished(done) and not cfg.rerun:
                row = _log_skip(done, results_dir)
            else:
                if _finished(done) and jobstate.start_rerun(job_dir, done):
                    log.info("%s: resuming the interrupted rerun", run_id)
                row = _train(cfg, callbacks, stop, config, results_dir, chash, run_id, job_dir)
    except Stopped as e:
        when = f"during the test after {e.step} steps" if e.in_test else f"at step {e.step}"
        log.warning("%s interrupted by %s %s; run the same command to resume",
                    run_id, signal.Signals(e.signum).name, when)
    finally:
        if lock:
            lock.release()
    if stop.signum is not None:
        stop.leave()  # exits 128 + signal number (after the row, if the job got that far)
    return row


def _rank() -> int:
    from lightning.pytorch.utilities import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def _cluster_plugins() -> list:
    """Under SLURM, submitit (hydra/launcher=slurm) checkpoints and requeues; Lightning's own
    auto-requeue (SIGUSR1, `scontrol requeue`) would requeue the job a second time."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def _train(cfg: DictConfig, callbacks, stop: StopRequest, config: dict[str, Any], results_dir: Path, chash: str,
           run_id: str, job_dir: Path) -> dict[str, Any]:
    task = make_task(cfg)
    torch.set_num_threads(_threads(cfg))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = GapModule(task, make_model(cfg, task), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)

    sweep_id = _sweep_id(cfg)
    last_ckpt = job_dir / jobstate.LAST
    resume = jobstate.usable_checkpoint(job_dir)  # an unreadable one is moved aside with one line
    resume_from = str(resume) if resume else None
    logger = _make_logger(cfg, config, run_id, sweep_id, results_dir, job_dir)
    trainer_kwargs = dict(config["trainer"])
    redraw_every = PROGRESS_EVERY if cfg.progress is True else int(cfg.progress or 0)
    trainer_kwargs.setdefault("enable_progress_bar", redraw_every > 0)
    # every rank evaluates the whole (small) held-out set, so metrics never depend on the device count
    trainer_kwargs.setdefault("use_distributed_sampler", False)
    max_steps = int(cfg.trainer.max_steps)
    probe = GradientProbe([round(f * (max_steps - 1)) for f in cfg.probe.at],
                          {"run_id": run_id, "task": cfg.task.name, "cell": cfg.cell.name, "gap": cfg.gap, "seed": cfg.seed})
    trainer = L.Trainer(
        **trainer_kwargs, logger=logger, default_root_dir=str(job_dir),
        plugins=[jobstate.AtomicCheckpointIO(), *_cluster_plugins()],
        callbacks=[ModelCheckpoint(dirpath=str(job_dir), save_last=True, save_top_k=0,
                                   every_n_train_steps=cfg.checkpoint_every, enable_version_counter=False),
                   probe, StopOnSignal(stop, last_ckpt),
                   *([TQDMProgressBar(refresh_rate=redraw_every)] if trainer_kwargs["enable_progress_bar"] else []),
                   *callbacks],
    )
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    status, diverged_at, error = "finished", None, None
    try:
        try:
            if resume_from:
                log.info("resuming %s from %s", run_id, resume_from)
            trainer.fit(module, datamodule=TaskData(task), ckpt_path=resume_from, weights_only=True)
        except Diverged as e:
            status, diverged_at, error = "diverged", e.step, str(e)
            log.warning("%s diverged: %s", run_id, e)
        except SIGTERMException:  # Lightning's own handler won a race with ours: no new checkpoint
            raise Stopped(stop.signum or signal.SIGTERM, trainer.global_step, saved=False) from None
        if status == "finished":
            trainer.test(module, datamodule=TaskData(task), verbose=False)
        wall_s = time.perf_counter() - t0
        metrics = module.test_metrics
        row = {
            "run_id": run_id, "sweep_id": sweep_id, "task": cfg.task.name, "cell": cfg.cell.name,
            "gap": cfg.gap, "seed": cfg.seed, "status": status,
            "steps": int(trainer.global_step), "wall_s": wall_s,
            "stopped_by": "diverged" if status == "diverged" else
                          "max_steps" if trainer.global_step >= max_steps else "max_time",
            "score_name": task.score_name, "score": metrics.get(task.score_name, float("nan")),
            "higher_is_better": task.higher_is_better, "test_loss": metrics.get("loss", float("nan")),
            "baseline": task.baseline,
            "started_at": started.isoformat(timespec="seconds"),
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "device": _device_name(trainer), "threads": torch.get_num_threads(),
            "torch_version": torch.__version__, "config_hash": chash,
            "diverged_at_step": diverged_at, "error": error,
            **{f"test/{k}": v for k, v in metrics.items()},
            **{f"gates/{k}": v for k, v in probe.last_gates.items()},
            **results.flatten({k: v for k, v in config.items() if k != "hydra"}),
        }
        if logger and cfg.logger.name == "wandb" and trainer.is_global_zero:  # other ranks have no W&B run
            logger.experiment.summary.update({k: row[k] for k in ("status", "steps", "wall_s", "score_name",
                                                                    "score", "baseline", "test_loss")})
        if not trainer.is_global_zero:  # DDP: one row per job, written by rank 0
            return row
        if probe.records:
            results.append_curve(results_dir, run_id, probe.records)
        path = results.append_run(results_dir, row)
        log.info("%s %s: %s=%.4g (baseline %.4g) after %d steps in %.0f s -> %s", run_id, status,
                 task.score_name, row["score"], task.baseline, row["steps"], wall_s, path)
        return row
    finally:
        if logger and cfg.logger.name == "wandb":
            import wandb
            wandb.finish()
