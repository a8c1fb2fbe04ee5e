"""One job: build the cell, task, model and trainer from a resolved config; fit; test; record one row."""
from __future__ import annotations

import datetime as dt
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
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from gapbench import cells, paths, results, tasks
from gapbench.train import continuation, jobstate
from gapbench.train.jobstate import ConfigInCheckpoint
from gapbench.sweep import progress as sweep_progress
from gapbench.train.measurement import not_a_measurement
from gapbench.config.conditions import condition_id
from gapbench.config.identity import config_hash, job_run_id
from gapbench.train.lightning_module import Diverged, GapModule, TaskData
from gapbench.train.probe import GradientProbe
from gapbench.train.progress import LossTrace, PlainProgress, StepProgressBar, can_redraw, plain_every
from gapbench.train.signals import StopOnSignal, Stopped, StopRequest, refuse_if_stopping
from gapbench.train.stopping import StopWhenSolved
from gapbench.tasks import Task, build_task
from gapbench.config.validate import ConfigError, check_config

log = logging.getLogger("gapbench")
# Lightning advertises its cloud logger on every Trainer: one line of noise per job in a sweep.
logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda record: "litlogger" not in record.getMessage())

PROGRESS_EVERY = 10  # progress=true: redraw the bar every 10 steps (a redraw costs ~0.2 ms on this CPU)


def _sweep_id(cfg: DictConfig) -> str:
    if cfg.sweep_id:
        return str(cfg.sweep_id)
    try:
        return sweep_progress.sweep_id(cfg, HydraConfig.get())
    except ValueError:  # not launched through Hydra (tests, notebooks)
        return dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def _in_multirun() -> bool:
    try:
        return HydraConfig.get().mode.name == "MULTIRUN"
    except ValueError:
        return False


def make_task(cfg: DictConfig) -> Task:
    opts = tasks.options(OmegaConf.to_container(cfg.task, resolve=True))
    return build_task(cfg.task.name, cfg.gap, cfg.seed, cfg.task.batch_size, **opts)


def make_model(cfg: DictConfig, task: Task) -> torch.nn.Module:
    """The task's model around the configured cell; seed torch before calling."""
    opts = cells.options(OmegaConf.to_container(cfg.cell, resolve=True))
    try:
        return task.build_model(lambda n_in: cells.build(cfg.cell.name, n_in, cfg.cell.hidden_size,
                                                         max_len=task.seq_len, **opts),
                                cfg.cell.hidden_size)
    except TypeError as e:
        raise ConfigError(f"cell {cfg.cell.name}: {e}") from None


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _threads(cfg: DictConfig) -> int:
    if cfg.threads:
        if int(cfg.threads) > cpu_cores():  # more threads than cores only adds waiting (~20x slower here)
            log.warning("threads=%d capped to %d, the cores available to this process", cfg.threads, cpu_cores())
        return min(int(cfg.threads), cpu_cores())
    if os.environ.get("SLURM_CPUS_PER_TASK"):  # submitit/SLURM: the allocation is the budget
        return int(os.environ["SLURM_CPUS_PER_TASK"])
    return max(1, cpu_cores() // _parallel_jobs())


def _parallel_jobs() -> int:
    """Jobs this job's launcher runs at once on this machine (joblib's n_jobs; 1 otherwise)."""
    try:
        jobs = int(HydraConfig.get().launcher.get("n_jobs") or 1)
    except (ValueError, AttributeError):
        jobs = 1
    return cpu_cores() if jobs < 0 else max(1, jobs)  # joblib: n_jobs=-1 means one job per core


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
        name=sweep_progress.run_name(cfg, run_id), id=wandb_id, resume="allow",
        group=sweep_id, job_type=cfg.task.name, dir=str(results_dir),
        tags=[cfg.task.name, cfg.cell.name, f"gap{cfg.gap}"],
        config={"cell": cfg.cell.name, "task": cfg.task.name, "gap": cfg.gap, "seed": cfg.seed,
                "run_id": run_id, "sweep_id": sweep_id, "config": config},
    ))
    _drop_logs_once_service_is_gone(run)
    return WandbLogger(experiment=run, save_dir=str(results_dir))


def _drop_logs_once_service_is_gone(run) -> None:
    """W&B logs through a service process. Under SLURM the SIGTERM of a pre-emption or requeue
    reaches it too, and it exits before the job reaches its step boundary: every later `run.log`
    (Lightning's metrics, the probe's charts) would fail on the lost connection and cost the job
    its checkpoint. Those calls are dropped instead, with one warning; the job saves where it
    stops, and when it resumes it continues the same W&B run."""
    real, warned = run.log, []

    def log_or_drop(*args, **kwargs):
        try:
            return real(*args, **kwargs)
        except OSError as e:
            if not warned:
                log.warning("W&B's service is gone (%s); this job logs no more to W&B until it is restarted",
                            type(e).__name__)
                warned.append(e)

    run.log = log_or_drop


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


def _init_when_free(wandb, kwargs: dict[str, Any], wait_s: float = 120.0):
    """wandb.init; if the run id is still "in use" (the W&B service of a SIGKILLed earlier start of
    this job lives on until it notices), wait for it to let go; if it never does, log this start as
    a new W&B run rather than fail the job: the logger never costs a result."""
    deadline, said = time.monotonic() + wait_s, False
    while True:
        try:
            return wandb.init(**kwargs)
        except Exception as e:  # noqa: BLE001 - wandb raises its own ServerResponseError here
            if "in use" not in str(e):
                raise
            wandb.teardown()
            if time.monotonic() > deadline:
                import secrets

                log.warning("W&B run %s is still held by an earlier start of this job after %.0f s; this start "
                            "logs to a new W&B run", kwargs.get("id"), wait_s)
                return wandb.init(**{**kwargs, "id": secrets.token_hex(6)})
            if not said:
                log.info("W&B run %s is still held by an earlier, killed start of this job; waiting up to %.0f s",
                         kwargs.get("id"), wait_s)
                said = True
            time.sleep(2.0)


def _finished(done: dict[str, Any] | None) -> bool:
    return bool(done) and done.get("status") in ("finished", "diverged")


def _log_skip(done: dict[str, Any], results_dir: Path, cfg: DictConfig) -> dict[str, Any]:
    sweep_id = _sweep_id(cfg)
    if done.get("sweep_id") != sweep_id and (cfg.sweep_id or _in_multirun()):  # the sweep's report includes it
        results.note_reuse(results_dir, sweep_id, done["run_id"])
    log.info("skip %s: already %s in %s (score %s=%s); rerun=true trains it again", done["run_id"], done["status"],
             results.run_path(results_dir, done["run_id"]), done.get("score_name"), done.get("score"))
    return {**done, "skipped": True}  # for the sweep's table; the stored row is unchanged


def run_job(cfg: DictConfig, callbacks: list[L.Callback] = ()) -> dict[str, Any]:
    """One job's lifecycle: skip it if done; else hold its lock, train (resuming from its last
    checkpoint), and on SIGTERM/SIGINT stop at a step boundary with a checkpoint and exit 128+signal.
    `callbacks`: extra Lightning callbacks (the overhead benchmark's clock)."""
    refuse_if_stopping()
    check_config(cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    results_dir = Path(to_absolute_path(cfg.results_dir)).expanduser()
    chash = config_hash(config)
    run_id = job_run_id(cfg)
    done = results.read_run(results_dir, run_id)
    if _finished(done) and not cfg.rerun:
        return _log_skip(done, results_dir, cfg)

    job_dir = results_dir / "jobs" / run_id
    for name in (jobstate.LOCK, jobstate.OWNER):
        if (job_dir / name).is_dir():
            raise ConfigError(f"{job_dir / name} is a folder where the job keeps its lock file; move it away "
                              "and run the same command again")
    # DDP: Lightning starts ranks 1.. inside rank 0's fit, which holds the lock; they join its job
    lock = jobstate.JobLock(job_dir) if _rank() == 0 else None
    if lock and not lock.acquire():
        log.warning("%s is running elsewhere (%s); skipped here", run_id, lock.describe_holder())
        return {"run_id": run_id, "status": "running elsewhere"}
    if lock:  # this job's row and curve are written only by whoever holds its lock
        for folder in (results.RUNS, results.CURVES):
            paths.remove_stale_temps(results_dir / folder, f"{run_id}.json")
    stop, row = StopRequest(), None
    try:
        with stop:
            done = results.read_run(results_dir, run_id)  # it may have finished while another process held it
            if _finished(done) and not cfg.rerun:
                row = _log_skip(done, results_dir, cfg)
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


def set_numerics(tf32: bool) -> None:
    """Float32 matmuls and cuDNN convolutions in full fp32 (default) or TF32 on a GPU. PyTorch's own
    defaults differ (cuDNN convolutions in TF32, matmuls not), which made the TCN's float32 gradients
    differ from the CPU's by 6.7%; the key is part of the condition and is stored in the row."""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")


def _cluster_plugins() -> list:
    """Under SLURM, submitit (hydra/launcher=slurm) checkpoints and requeues; Lightning's own
    auto-requeue (SIGUSR1, `scontrol requeue`) would requeue the job a second time."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def _train(cfg: DictConfig, callbacks, stop: StopRequest, config: dict[str, Any], results_dir: Path, chash: str,
           run_id: str, job_dir: Path) -> dict[str, Any]:
    task = make_task(cfg)
    torch.set_num_threads(_threads(cfg))
    set_numerics(bool(cfg.get("tf32", False)))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = GapModule(task, make_model(cfg, task), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay,
                       optim={**OmegaConf.to_container(cfg.optim, resolve=True), "recipe": cfg.cell.get("recipe", "paper")})

    sweep_id = _sweep_id(cfg)
    last_ckpt = job_dir / jobstate.LAST
    resume = jobstate.usable_checkpoint(job_dir)  # an unreadable one is moved aside with one line
    resume_from = str(resume) if resume else None
    parent = None if resume_from or cfg.rerun else continuation.find_parent(results_dir, config, run_id, config_hash)
    if parent:
        resume_from = parent["checkpoint"]
    debug = not_a_measurement(cfg)
    logger = _make_logger(cfg, config, run_id, sweep_id, results_dir, job_dir)
    trainer_kwargs = dict(config["trainer"])
    redraw_every = PROGRESS_EVERY if cfg.progress is True else int(cfg.progress or 0)
    trainer_kwargs.setdefault("enable_progress_bar", redraw_every > 0)
    max_steps = int(cfg.trainer.max_steps)
    progress = []
    if trainer_kwargs["enable_progress_bar"]:
        parallel = _parallel_jobs() > 1
        if can_redraw(parallel):
            progress = [StepProgressBar(refresh_rate=redraw_every)]
        else:  # a file or a terminal shared by parallel workers: plain lines, not redraws
            trainer_kwargs["enable_progress_bar"] = False
            progress = [PlainProgress(plain_every(redraw_every or PROGRESS_EVERY, max_steps),
                                      label=f"{run_id}: " if parallel else "")]
    # every rank evaluates the whole (small) held-out set, so metrics never depend on the device count
    trainer_kwargs.setdefault("use_distributed_sampler", False)
    loss_trace = LossTrace() if cfg.trainer.get("overfit_batches") else None  # debug=overfit: what it is for
    probe = GradientProbe([round(f * (max_steps - 1)) for f in cfg.probe.at],
                          {"run_id": run_id, "task": cfg.task.name, "cell": cfg.cell.name, "gap": cfg.gap, "seed": cfg.seed})
    solved = StopWhenSolved(task, stop=bool(cfg.get("stop_when_solved", False)))
    clock = jobstate.WallClock(earlier=parent is None)
    trainer = L.Trainer(
        **trainer_kwargs, logger=logger, default_root_dir=str(job_dir),
        plugins=[jobstate.AtomicCheckpointIO(), *_cluster_plugins()],
        callbacks=[ModelCheckpoint(dirpath=str(job_dir), save_last=True, save_top_k=0,
                                   every_n_train_steps=cfg.checkpoint_every, enable_version_counter=False),
                   probe, solved, clock, StopOnSignal(stop, last_ckpt), ConfigInCheckpoint(config),
                   *progress, *([loss_trace] if loss_trace else []),
                   *callbacks],
    )
    started = dt.datetime.now(dt.timezone.utc)
    status, diverged_at, error = "finished", None, None
    try:
        try:
            log.info("start %s: up to %d steps%s%s", run_id, max_steps,
                     f" or {cfg.trainer.max_time}" if cfg.trainer.get("max_time") else "",
                     f", continuing {parent['run_id']} from step {parent['steps']}" if parent else
                     f", resuming from {resume_from}" if resume_from else "")
            trainer.fit(module, datamodule=TaskData(task), ckpt_path=resume_from, weights_only=True)
        except Diverged as e:
            status, diverged_at, error = "diverged", e.step, str(e)
            log.warning("%s diverged: %s", run_id, e)
        except SIGTERMException:  # Lightning's own handler won a race with ours: no new checkpoint
            raise Stopped(stop.signum or signal.SIGTERM, trainer.global_step, saved=False) from None
        except OSError:
            # a W&B call other than run.log failed on the service SLURM's SIGTERM ended (see
            # _drop_logs_once_service_is_gone): the job stops as asked, from its last checkpoint (one
            # saved mid-step could repeat a step on resume)
            if stop.signum is None:
                raise
            raise Stopped(stop.signum, trainer.global_step, saved=False) from None
        if status == "finished":
            if module.val_step != trainer.global_step:  # the row's val_score is the final model's
                trainer.validate(module, datamodule=TaskData(task), verbose=False)
            trainer.test(module, datamodule=TaskData(task), verbose=False)
        wall_s = clock.seconds()  # over every segment of a resumed job
        metrics = module.test_metrics
        row = {
            "run_id": run_id, "sweep_id": sweep_id, "task": cfg.task.name, "cell": cfg.cell.name,
            "gap": cfg.gap, "seed": cfg.seed, "status": status,
            "steps": int(trainer.global_step), "wall_s": wall_s,
            "stopped_by": "diverged" if status == "diverged" else "solved" if solved.stopped else
                          "max_steps" if trainer.global_step >= max_steps else "max_time",
            "score_name": task.score_name, "score": metrics.get(task.score_name, float("nan")),
            "higher_is_better": task.higher_is_better, "test_loss": metrics.get("loss", float("nan")),
            "baseline": task.baseline,
            "val_score": module.val_metrics.get(task.score_name, float("nan")), "val_step": module.val_step,
            "started_at": started.isoformat(timespec="seconds"),
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "device": _device_name(trainer), "threads": torch.get_num_threads(),
            "torch_version": torch.__version__, "config_hash": chash,
            "condition": condition_id(results.flatten({k: v for k, v in config.items() if k != "hydra"})),
            "diverged_at_step": diverged_at, "error": error, "solved_at_step": solved.solved_at,
            "continued_from": parent and parent["run_id"], "continued_from_step": parent and parent["steps"],
            **{f"test/{k}": v for k, v in metrics.items()},
            **{f"test/{k}": v for k, v in getattr(task, "test_info", {}).items()},  # strings (BLEU signature)
            **{f"val/{k}": v for k, v in module.val_metrics.items()},
            **{f"gates/{k}": v for k, v in probe.last_gates.items()},
            **results.flatten({k: v for k, v in config.items() if k != "hydra"}),
        }
        if logger and cfg.logger.name == "wandb" and trainer.is_global_zero:  # other ranks have no W&B run
            logger.experiment.summary.update({
                **{k: row[k] for k in ("status", "steps", "wall_s", "score_name", "score", "baseline", "test_loss",
                                       "stopped_by", "higher_is_better", "run_id", "continued_from")},
                "direction": "maximize" if task.higher_is_better else "minimize",
                "budget/max_steps": max_steps, "budget/max_time": cfg.trainer.get("max_time")})
        if not trainer.is_global_zero:  # DDP: one row per job, written by rank 0
            return row
        if debug and loss_trace and loss_trace.first:
            (s0, l0), (s1, l1) = loss_trace.first, loss_trace.last
            log.info("end %s %s: training loss on one repeated batch %.4g at step %d -> %.4g at step %d (%s); "
                     "not stored (%s is not a full measurement)", run_id, status, l0, s0, l1, s1,
                     "falling" if l1 < 0.5 * l0 else "NOT falling: the model cannot fit one batch at this lr", debug)
            return {**row, "status": f"{status} (debug, not stored)", "train_loss_first": l0, "train_loss_last": l1}
        if debug:
            log.info("end %s %s: %s=%.4g (baseline %.4g) after %d steps in %.0f s -> not stored (%s is not a "
                     "full measurement)", run_id, status, task.score_name, row["score"], task.baseline,
                     row["steps"], wall_s, debug)
            return {**row, "status": f"{status} (debug, not stored)"}
        if probe.records:
            results.append_curve(results_dir, run_id, probe.records)
        path = results.append_run(results_dir, row)
        log.info("end %s %s: %s=%.4g (baseline %.4g) after %d steps (stopped by %s) in %.0f s -> %s", run_id, status,
                 task.score_name, row["score"], task.baseline, row["steps"], row["stopped_by"], wall_s, path)
        return row
    finally:
        if logger and cfg.logger.name == "wandb":
            import sys

            import wandb

            if paths.is_disk_full(sys.exc_info()[1]):  # nothing more W&B writes can succeed: stop its service
                wandb.teardown(exit_code=1)
            else:
                try:
                    wandb.finish()
                except OSError as e:  # W&B's service is gone (see above): the row is stored, the job ends as it would
                    if stop.signum is None:
                        log.warning("W&B's service was gone at the end of the job (%s); its run may miss its last "
                                    "values", type(e).__name__)
