"""Config checks that run before anything is allocated or written. Each failure is one line."""
from __future__ import annotations

import functools
import inspect
import json
import logging
import math
import os
import re
import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from gapbench import cells, paths
from gapbench import tasks
from gapbench.train.optim import RECIPES

LOGGERS = ("wandb", "csv", "none")
WANDB_MODES = ("offline", "online", "disabled")


class ConfigError(ValueError):
    """Bad user input; the message is printed as one line, the job exits 2 and writes nothing."""


@dataclass(frozen=True)
class Machine:
    """Where a job will run, as the checks that depend on the machine see it: its GPUs and the memory
    it may use (None: not known, not checked). Unset, they judge this machine; a SLURM sweep's
    preflight judges what the launcher requests for each job (`gapbench.sweep.slurm.requested_machine`)."""
    gpus: int
    memory_bytes: int | None
    gpus_from: str = ""  # where each number comes from, for messages: "hydra.launcher.mem_gb=4"
    memory_from: str = ""


_TARGET: ContextVar[Machine | None] = ContextVar("gapbench_target_machine", default=None)


@contextmanager
def judging(machine: Machine | None):
    """Within this block the checks judge `machine` (None: this machine)."""
    token = _TARGET.set(machine)
    try:
        yield
    finally:
        _TARGET.reset(token)


# eval_only=true rebuilds the job from its checkpoint's config: these keys may change what is tested
EVAL_CHANGES = ("gap", "seed", "task.test_size")
# and these only how it runs or is shown; any other key would need another model, so it is refused
EVAL_PRESENTATION = ("results_dir", "threads", "progress", "verbose", "eval_only", "ckpt_path", "eval_out", "logger",
                     "wandb", "rerun", "sweep_id", "checkpoint_every", "hydra", "hydra/launcher", "hydra/sweeper")


def check_eval_overrides(keys: list[str]) -> None:
    """eval_only=true: refuse, in one line, a command-line key the checkpoint's model cannot honour."""
    refused = [k for k in (k.lstrip("+~") for k in keys)
               if k not in EVAL_CHANGES and k.split(".")[0] not in EVAL_PRESENTATION]
    if refused:
        raise ConfigError(f"eval_only=true tests the checkpoint's model as trained and can change only "
                          f"{', '.join(EVAL_CHANGES)}; it cannot honour {', '.join(refused)} (train a job with it instead)")


def _int(name: str, value: Any, minimum: int, hint: str = "", maximum: int | None = None) -> int:
    valid = f"an integer >= {minimum}" if maximum is None else f"an integer in [{minimum}, {maximum}]"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}={value!r} is not an integer; {name} must be {valid}{hint}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ConfigError(f"{name}={value} is out of range; {name} must be {valid}{hint}")
    return value


def _number(name: str, value: Any, low: float, high: float = math.inf, low_open: bool = False,
            high_open: bool = False) -> float:
    """A finite real number in a range, e.g. optim.lr in (0, inf)."""
    valid = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open or high == math.inf else ']'}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}={value!r} is not a number; {name} must be a finite number in {valid}")
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and \
        (value < high if high_open else value <= high)
    if not ok:
        raise ConfigError(f"{name}={value} is out of range; {name} must be a finite number in {valid}")
    return float(value)


def _bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} is not a boolean; {name} must be true or false")


def _choice(name: str, value: Any, valid) -> None:
    if value not in valid:
        raise ConfigError(f"unknown {name} '{value}'; valid: {', '.join(valid)}")


def _writable_dir(results_dir: Any) -> None:
    """results_dir and every folder a job writes in it: tried by creating a file (gapbench.paths)."""
    if not isinstance(results_dir, str) or not results_dir.strip():
        raise ConfigError(f"results_dir={results_dir!r} is not a path; give a writable directory, e.g. results_dir=results")
    problem = _store_problem(results_dir, str(Path.cwd()), _minute())
    if problem:
        raise ConfigError(problem)


def _minute() -> int:
    """Folder and disk checks are repeated for each job of a sweep: their answer is kept for a minute."""
    import time

    return int(time.monotonic() // 60)


@functools.lru_cache(maxsize=64)
def _store_problem(results_dir: str, cwd: str, minute: int) -> str | None:
    base = Path(results_dir).expanduser()
    for folder in [base, *(base / sub for sub in JOB_FOLDERS)]:
        if folder is base or folder.exists() or folder.is_symlink():
            problem = paths.folder_problem(folder, f"results_dir={results_dir}" if folder is base else f"{folder}")
            if problem:
                return f"{problem}; give a writable directory"
    return None


@functools.lru_cache(maxsize=64)
def _free_bytes(results_dir: str, cwd: str, minute: int) -> int | None:
    return paths.free_bytes(results_dir)


JOB_FOLDERS = ("runs", "jobs", "curves", "hydra", "wandb", "horizons", "csv")  # what a job writes under results_dir


def _check_disk(results_dir: str, params: int) -> None:
    """Room for a checkpoint while it is saved (the new one, the last and the previous: 3 copies) plus a margin."""
    need = 3 * CHECKPOINT_BYTES_PER_PARAMETER * params
    free = _free_bytes(results_dir, str(Path.cwd()), _minute())
    if free is not None and free < need + paths.DISK_MARGIN_BYTES:
        raise ConfigError(paths.space_problem(results_dir, need, "results_dir", free=free))


CHECKPOINT_BYTES_PER_PARAMETER = 12  # float32 weights and Adam's two moments


# keys gapbench reads in every job: deleting one (`~key`) leaves the job nothing to run with
REQUIRED = ("gap", "seed", "results_dir", "sweep_id", "rerun", "threads", "progress", "checkpoint_every", "verbose",
            "eval_only", "probe.at", "optim.name", "optim.lr", "optim.weight_decay", "wandb.mode", "wandb.project",
            "wandb.entity", "cell.name", "cell.hidden_size", "task.name", "task.batch_size", "trainer.max_steps",
            "trainer.accelerator", "logger.name")


def check_required(cfg: dict) -> None:
    for key in REQUIRED:
        node = cfg
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"{key} is missing from the config (a ~ override deleted it); every job reads it: "
                                  f"set a value instead, e.g. {key}=..., see `python run.py --help`")
            node = node[part]


class _Attrs(dict):
    """A resolved config as plain dicts with attribute access: ~100x faster to read than a DictConfig."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


def plain(cfg) -> _Attrs:
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    if isinstance(cfg, dict):
        return _Attrs({k: plain(v) for k, v in cfg.items()})
    if isinstance(cfg, list):
        return [plain(v) for v in cfg]
    return cfg


def check_config(cfg: DictConfig | dict) -> None:
    """Static checks: names, types, ranges, paths. Cheap; runs for every job of a sweep before the first starts."""
    cfg = plain(cfg)
    check_required(cfg)
    try:
        cells.cell_class(cfg.cell.name)  # a registered name, or the import path of the user's own model
    except ValueError as e:
        raise ConfigError(str(e)) from None
    task_cls = tasks.task_class(cfg.task.name)  # TaskError: shown as one line, like a ConfigError
    _choice("logger", cfg.logger.name, LOGGERS)
    _choice("wandb.mode", cfg.wandb.mode, WANDB_MODES)
    _int("gap", cfg.gap, task_cls.min_gap, f" (task {task_cls.name}: gap = {task_cls.gap_meaning})")
    _int("seed", cfg.seed, 0, maximum=MAX_SEED)
    _int("cell.hidden_size", cfg.cell.hidden_size, 1)
    _choice("cell.recipe", cfg.cell.get("recipe", "paper"), RECIPES)
    _int("task.batch_size", cfg.task.batch_size, 1)
    _int("trainer.max_steps", cfg.trainer.max_steps, 1)
    _int("checkpoint_every", cfg.checkpoint_every, 1)
    at = cfg.probe.at
    if not isinstance(at, list) or any(isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f <= 1 for f in at):
        raise ConfigError(f"probe.at={at} is invalid; give fractions of trainer.max_steps in [0, 1], e.g. [0.0, 0.5, 1.0], or []")
    if cfg.threads is not None:
        _int("threads", cfg.threads, 1)
    if cfg.progress is not True and cfg.progress is not False:
        _int("progress", cfg.progress, 1, " (steps between progress-bar redraws), or false for no bar")
    _bool("rerun", cfg.rerun)
    _bool("tf32", cfg.get("tf32", False))
    if cfg.sweep_id is not None:
        problem = paths.name_problem("sweep_id", cfg.sweep_id)
        if problem:
            raise ConfigError(problem)
    check_optim(cfg.optim)
    check_wandb(cfg.wandb)
    for key in ("verbose", "eval_only"):
        if cfg.get(key) not in (True, False, None):
            raise ConfigError(f"{key}={cfg.get(key)!r} is invalid; valid: true, false")
    if cfg.get("ckpt_path") and not cfg.get("eval_only"):
        raise ConfigError("ckpt_path is read only with eval_only=true (evaluate a checkpoint); to continue a finished "
                          "job, run its command again with a larger trainer.max_steps")
    if cfg.get("eval_only") and not cfg.get("ckpt_path"):
        raise ConfigError("eval_only=true needs ckpt_path=...; e.g. ckpt_path=results/jobs/RUN_ID/last.ckpt")
    if cfg.get("eval_only"):
        check_checkpoint(cfg.ckpt_path)
    stop = cfg.get("stop_when_solved", False)
    if not isinstance(stop, bool) or (stop and task_cls.solved_text is None):
        raise ConfigError(f"stop_when_solved={stop!r} is invalid for task {task_cls.name}: valid: false, or true for a task "
                          f"with a solved criterion ({', '.join(n for n in tasks.names() if tasks.task_class(n).solved_text)})")
    task_opts = tasks.options(cfg.task)
    tasks.check_option_names(cfg.task.name, task_opts)
    check_task_option_values(task_cls, task_opts)
    cell_opts = cells.options(cfg.cell)
    try:
        cells.check_options(cfg.cell.name, cell_opts, cfg.cell.hidden_size)
    except cells.OptionError as e:
        raise ConfigError(str(e)) from None
    check_trainer(dict(cfg.trainer))
    check_pair(cfg.cell.name, task_cls)
    task_cls.check_options(cfg.gap, **task_opts)
    _check_optim(cfg, task_cls)
    on_gpu = cfg.trainer.accelerator in ("gpu", "cuda") or (cfg.trainer.accelerator == "auto" and _cuda())
    params = parameter_count(cfg.task.name, cfg.gap, cfg.task.batch_size, task_opts, cfg.cell.name,
                             cfg.cell.hidden_size, cells.options(cfg.cell))
    check_memory(cfg.task.batch_size, task_cls.steps_for_gap(cfg.gap, **task_opts), cfg.cell.hidden_size,
                 "gpu" if on_gpu else "cpu", cfg.cell.name, cell_opts, params=params or 0)
    check_eval_memory(cfg.task.name, cfg.gap, task_opts)
    _writable_dir(cfg.results_dir)
    _check_disk(cfg.results_dir, params or 0)
    if cfg.logger.name == "wandb" and cfg.wandb.mode == "online" and not _wandb_credentials():
        raise ConfigError("wandb.mode=online needs W&B credentials (run `wandb login` or set WANDB_API_KEY); "
                          "or use wandb.mode=offline and `wandb sync` later")


def _check_optim(cfg: DictConfig, task_cls) -> None:
    from gapbench.train import optim

    try:
        optim.check(dict(cfg.optim))
    except optim.OptimError as e:
        raise ConfigError(str(e)) from None
    if cfg.optim.get("decay_after_epochs") is not None and not hasattr(task_cls, "steps_per_epoch"):
        raise ConfigError(f"optim.decay_after_epochs needs a task with epochs (lm_word, lm_char); task {task_cls.name} "
                          "draws fresh data every step: use optim.decay_after_epochs=null")


def _cuda() -> bool:
    target = _TARGET.get()
    if target is not None:
        return target.gpus > 0
    import torch

    return torch.cuda.is_available()


def _where(what: str) -> str:
    target = _TARGET.get()
    if target is None:
        return "this machine"
    return f"the job's node ({target.gpus_from if what == 'gpus' else target.memory_from})"


def _wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def available_memory_bytes() -> int | None:
    """The memory a job may use: what the launcher requests when judging a SLURM job before submission
    (None: not requested, not checked); in a SLURM job, at most its allocation; else this machine's."""
    target = _TARGET.get()
    if target is not None:
        return target.memory_bytes
    here = _available_here()
    allocated = os.environ.get("SLURM_MEM_PER_NODE")  # MiB, set by sbatch --mem
    return min(here, int(allocated) * 2**20) if allocated and allocated.isdigit() and int(allocated) else here


def _available_here() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_pair(cell: str, task_cls) -> None:
    """A task that needs what the model cannot do (translation's decoder steps a recurrent state)."""
    missing = cells.missing_capabilities(cell, task_cls.requires)
    if missing:
        raise ConfigError(f"cell {cell} cannot run task {task_cls.name}: the task needs "
                          f"{' and '.join(cells.CAPABILITIES[c] for c in missing)}, which {cells.title(cell)} "
                          f"does not have; cells that can: {', '.join(cells.capable(task_cls.requires))}")


def estimate_activation_bytes(batch: int, seq_len: int, hidden: int, bytes_per_value: int = 4, cell: str = "lstm",
                              cell_opts: dict | None = None) -> int:
    """Activations kept for backpropagation: the model's own `activation_bytes` hook (cells.base)."""
    return cells.activation_bytes(cell, batch, seq_len, hidden, bytes_per_value=bytes_per_value, **(cell_opts or {}))


BYTES_PER_PARAMETER = 16  # float32 weight, its gradient and Adam's two moments


def check_memory(batch: int, seq_len: int, hidden: int, device: str, cell: str = "lstm",
                 cell_opts: dict | None = None, params: int = 0) -> None:
    if device != "cpu":
        return  # the GPU's own OOM error is already precise; the estimate is for host RAM
    activations = estimate_activation_bytes(batch, seq_len, hidden, cell=cell, cell_opts=cell_opts)
    have = available_memory_bytes()
    weights = BYTES_PER_PARAMETER * params
    if have is not None and activations + weights > 0.8 * have:
        raise ConfigError(
            f"batch {batch} x {seq_len} steps x hidden {hidden} needs ~{(activations + weights) / 2**30:.1f} GiB "
            f"({activations / 2**30:.1f} GiB for backpropagation through time, {weights / 2**30:.1f} GiB for "
            f"{params:,} parameters with gradients and Adam state) but {have / 2**30:.1f} GiB is available on "
            f"{_where('memory')}; lower cell.hidden_size, task.batch_size or gap"
            f"{', or raise hydra.launcher.mem_gb' if _TARGET.get() is not None else ''}")


def check_checkpoint(ckpt_path: Any) -> None:
    """eval_only's checkpoint: a file torch can read that carries a gapbench config (jobstate.read_checkpoint)."""
    from gapbench.train import jobstate

    try:
        jobstate.read_checkpoint(str(ckpt_path))
    except ValueError as e:
        raise ConfigError(str(e)) from None


def check_eval_memory(task: str, gap: int, task_opts: dict) -> None:
    """A synthetic task draws its whole validation and test sets at once: they must fit in memory."""
    per_example = _example_bytes(json.dumps({"task": task, "gap": gap, "opts": dict(task_opts)}, sort_keys=True, default=str))
    if not per_example:
        return
    cls = tasks.task_class(task)
    defaults = {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values()}
    for split in ("test_size", "val_size"):
        size = task_opts.get(split, defaults.get(split))
        if not isinstance(size, int) or size * per_example < EVAL_SET_ALWAYS_FITS:
            continue
        have = available_memory_bytes()
        if size * per_example > 0.5 * have:
            raise ConfigError(f"task.{split}={size} needs ~{size * per_example / 2**30:.1f} GiB ({per_example} bytes per "
                              f"example at gap {gap}) but {have / 2**30:.1f} GiB is available; lower task.{split}")


EVAL_SET_ALWAYS_FITS = 256 * 2**20  # smaller held-out sets are not measured against free memory


@functools.lru_cache(maxsize=512)
def _example_bytes(key: str) -> int | None:
    """Bytes of one drawn example (inputs and targets) of a synthetic task; None for tasks with stored data."""
    from gapbench.tasks.base import SyntheticTask, seeded_generator

    spec = json.loads(key)
    if not issubclass(tasks.task_class(spec["task"]), SyntheticTask):
        return None  # stored data (MNIST, corpora): its held-out sets are as large as the files
    opts = {k: v for k, v in spec["opts"].items() if k not in ("test_size", "val_size")}
    try:
        task = tasks.build_task(spec["task"], spec["gap"], 0, 1, **opts)
        return sum(t.element_size() * t.numel() for t in task.generate(1, seeded_generator(0, 0)))
    except Exception:  # noqa: BLE001 - a task that cannot draw here is checked when its job starts
        return None


@functools.lru_cache(maxsize=512)
def _parameter_count(key: str) -> int | None:
    import torch

    spec = json.loads(key)
    task = tasks.build_task(spec["task"], spec["gap"], 0, spec["batch"], **spec["task_opts"])
    try:
        with torch.device("meta"):  # shapes only: no memory, no time
            model = task.build_model(lambda n_in: cells.build(spec["cell"], n_in, spec["hidden"], **spec["cell_opts"]),
                                     spec["hidden"])
    except Exception:  # noqa: BLE001 - a model that cannot be built on "meta" is not estimated here
        return None
    return sum(p.numel() for p in model.parameters())


def parameter_count(task: str, gap: int, batch: int, task_opts: dict, cell: str, hidden: int,
                    cell_opts: dict) -> int | None:
    """Parameters of the job's model, from building it on PyTorch's meta device (cached)."""
    return _parameter_count(json.dumps({"task": task, "gap": gap, "batch": batch, "task_opts": dict(task_opts),
                                        "cell": cell, "hidden": hidden, "cell_opts": dict(cell_opts)},
                                       sort_keys=True, default=str))


# -- value checks, one per key: a new key adds one entry ---------------------------------------

MAX_SEED = 2**32 - 1  # numpy's (and so Lightning's seed_everything's) largest seed

OPTIM_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "lr": lambda name, v: _number(name, v, 0, low_open=True),
    "weight_decay": lambda name, v: _number(name, v, 0),
}


def check_optim(optim) -> None:
    for key, value in optim.items():
        if key in OPTIM_CHECKS:
            OPTIM_CHECKS[key](f"optim.{key}", value)


WANDB_PROJECT_RE = re.compile(r"[^/\\#?%:]{1,128}")


def check_wandb(wandb) -> None:
    if not isinstance(wandb.project, str) or not WANDB_PROJECT_RE.fullmatch(wandb.project):
        raise ConfigError(f"wandb.project={wandb.project!r} is not a W&B project name; use 1-128 characters "
                          "without / \\ # ? % :")
    if wandb.entity is not None and not isinstance(wandb.entity, str):
        raise ConfigError(f"wandb.entity={wandb.entity!r} is not a W&B entity; give a user or team name, or null")


def check_task_option_values(task_cls, opts: dict) -> None:
    """Types and ranges of a task's options, read from its constructor's defaults: an integer option
    is an integer >= 1 (>= 0 for a seed), a fraction or dropout is in [0, 1), a size is >= 1."""
    defaults = {p.name: p.default for p in inspect.signature(task_cls.__init__).parameters.values()}
    for key, value in opts.items():
        default, name = defaults.get(key), f"task.{key}"
        if isinstance(default, bool):
            _bool(name, value)
        elif isinstance(default, int):
            _int(name, value, 0 if "seed" in key else 1)
        elif isinstance(default, float):
            if key == "dropout" or key.endswith("_frac"):
                _number(name, value, 0, 1, high_open=True)
            else:
                _number(name, value, 0, low_open=True)
        elif default is None and key.endswith("_size") and value is not None:
            _int(name, value, 1)


# -- trainer: names from Lightning's own signature, values from a few rules and Lightning itself --

GAPBENCH_TRAINER_ARGS = {  # Trainer arguments gapbench sets itself, and what to use instead
    "logger": "logger=wandb|csv|none", "callbacks": "the job's own callbacks",
    "default_root_dir": "results_dir", "plugins": "gapbench's checkpoint plugin",
    "enable_checkpointing": "checkpoint_every (steps between checkpoints)",
}


@functools.cache
def trainer_arguments() -> tuple[str, ...]:
    import lightning.pytorch as L

    return tuple(p for p in inspect.signature(L.Trainer.__init__).parameters if p != "self")


def _optional(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    return lambda name, v: None if v is None else check(name, v)


def _val_check_interval(name: str, v: Any) -> None:
    if isinstance(v, float) and not isinstance(v, bool):
        _number(name, v, 0, 1, low_open=True)
    else:
        _int(name, v, 1, " (training steps), or a fraction of an epoch in (0, 1]")


def _max_time(name: str, v: Any) -> None:
    if not (isinstance(v, str) and re.fullmatch(r"\d+:\d{1,2}:\d{1,2}:\d{1,2}", v)) and not isinstance(v, dict):
        raise ConfigError(f"{name}={v!r} is not a duration; use DD:HH:MM:SS, e.g. 00:01:30:00, or null for no limit")
    seconds = sum(int(x) * unit for x, unit in zip(v.split(":"), (86400, 3600, 60, 1))) if isinstance(v, str) else \
        sum(float(x) * {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}.get(k, 1)
            for k, x in v.items() if isinstance(x, (int, float)))
    if seconds <= 0:
        raise ConfigError(f"{name}={v} is no time at all: the job would stop before its first step; "
                          "give a positive duration, e.g. 00:01:30:00, or null for no limit")


def _accelerator(name: str, v: Any) -> None:
    if v in ("gpu", "cuda") and not _cuda():
        raise ConfigError(f"{name}={v} but no CUDA GPU is visible on {_where('gpus')}; use {name}=cpu or auto")


TRAINER_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "max_time": _optional(_max_time),
    "accelerator": _accelerator,
    "val_check_interval": _optional(_val_check_interval),
    "check_val_every_n_epoch": _optional(lambda n, v: _int(n, v, 1)),
    "max_epochs": _optional(lambda n, v: _int(n, v, -1, " (-1: no limit)")),
    "min_epochs": _optional(lambda n, v: _int(n, v, 0)),
    "min_steps": _optional(lambda n, v: _int(n, v, -1, " (-1: no minimum)")),
    "log_every_n_steps": lambda n, v: _int(n, v, 1),
    "gradient_clip_val": _optional(lambda n, v: _number(n, v, 0)),
    "accumulate_grad_batches": lambda n, v: _int(n, v, 1),
    "num_sanity_val_steps": lambda n, v: _int(n, v, -1, " (-1: the whole validation set)"),
    "deterministic": lambda n, v: None if v in (True, False, "warn") else _choice(n, v, ("true", "false", "warn")),
}


def check_trainer(trainer_cfg: dict) -> None:
    valid = trainer_arguments()
    for key in trainer_cfg:
        if key in GAPBENCH_TRAINER_ARGS:
            raise ConfigError(f"trainer.{key} is set by gapbench; use {GAPBENCH_TRAINER_ARGS[key]} instead")
        if key not in valid:
            import difflib

            near = difflib.get_close_matches(key, valid, n=3)
            raise ConfigError(f"trainer.{key} is not an argument of Lightning's Trainer"
                              f"{'; did you mean ' + ', '.join(near) if near else ''} (see lightning.pytorch.Trainer)")
    for key, check in TRAINER_CHECKS.items():
        if key in trainer_cfg:
            check(f"trainer.{key}", trainer_cfg[key])
    if _TARGET.get() is not None and trainer_cfg.get("accelerator") in ("gpu", "cuda"):
        # judged for a node with GPUs (above) from a machine that may have none: Lightning would refuse here
        trainer_cfg = {**trainer_cfg, "accelerator": "cpu"}
    _build_trainer(json.dumps(trainer_cfg, sort_keys=True, default=str))


@functools.lru_cache(maxsize=256)
def _build_trainer(key: str) -> None:
    """Everything else Lightning checks when a Trainer is made (strategy, precision, devices
    present...): make one, writing nothing; name the key Lightning objects to."""
    kwargs = json.loads(key)
    problem = _trainer_problem(kwargs)
    if problem is None:
        return
    for name, value in kwargs.items():  # find the culprit: the first key that fails on its own
        if _trainer_problem({name: value}) is not None:
            raise ConfigError(f"trainer.{name}={value!r} is invalid: {problem}")
    raise ConfigError(f"this trainer configuration is invalid: {problem}")


def _trainer_problem(kwargs: dict) -> str | None:
    import lightning.pytorch as L

    quiet = logging.getLogger("lightning.pytorch")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            L.Trainer(**{"enable_progress_bar": False, "enable_model_summary": False, **kwargs},
                      logger=False, enable_checkpointing=False, callbacks=[])
    except Exception as e:  # noqa: BLE001 - Lightning raises several types; its message is the answer
        return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    finally:
        quiet.setLevel(level)
    return None
