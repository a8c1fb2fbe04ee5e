"""Config checks that run before anything is allocated or written. Each failure is one line."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from gapbench import cells
from gapbench import tasks

LOGGERS = ("wandb", "csv", "none")
WANDB_MODES = ("offline", "online", "disabled")


class ConfigError(ValueError):
    """Bad user input; the message is printed as one line, the job exits 2 and writes nothing."""


def _int(name: str, value: Any, minimum: int, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}={value!r} is not an integer; {name} must be an integer >= {minimum}{hint}")
    if value < minimum:
        raise ConfigError(f"{name}={value} is out of range; {name} must be an integer >= {minimum}{hint}")
    return value


def _choice(name: str, value: Any, valid) -> None:
    if value not in valid:
        raise ConfigError(f"unknown {name} '{value}'; valid: {', '.join(valid)}")


def _writable_dir(results_dir: Any) -> None:
    if not isinstance(results_dir, str) or not results_dir.strip():
        raise ConfigError(f"results_dir={results_dir!r} is not a path; give a writable directory, e.g. results_dir=results")
    path = Path(results_dir).expanduser().absolute()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"results_dir={results_dir} is not a directory; give a writable directory")
        if not os.access(path, os.W_OK | os.X_OK | os.R_OK):
            raise ConfigError(f"results_dir={results_dir} is not readable and writable; give a writable directory")
        return
    parent = next(p for p in path.parents if p.exists())
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"results_dir={results_dir} cannot be created ({parent} is not writable); give a writable directory")


def check_config(cfg: DictConfig) -> None:
    """Static checks: names, types, ranges, paths. Cheap; runs for every job of a sweep before the first starts."""
    _choice("cell", cfg.cell.name, cells.names())
    _choice("task", cfg.task.name, tasks.names())
    _choice("logger", cfg.logger.name, LOGGERS)
    _choice("wandb.mode", cfg.wandb.mode, WANDB_MODES)
    task_cls = tasks.task_class(cfg.task.name)
    _int("gap", cfg.gap, task_cls.min_gap, f" (task {task_cls.name}: gap = {task_cls.gap_meaning})")
    _int("seed", cfg.seed, 0)
    _int("cell.hidden_size", cfg.cell.hidden_size, 1)
    _int("cell.layers", cfg.cell.get("layers", 1), 1)
    dropout = cfg.cell.get("dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ConfigError(f"cell.dropout={dropout!r} is invalid; valid: a number in [0, 1) (dropout between stacked layers)")
    _int("task.batch_size", cfg.task.batch_size, 1)
    _int("trainer.max_steps", cfg.trainer.max_steps, 1)
    _int("checkpoint_every", cfg.checkpoint_every, 1)
    at = list(cfg.probe.at)
    if any(isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f <= 1 for f in at):
        raise ConfigError(f"probe.at={at} is invalid; give fractions of trainer.max_steps in [0, 1], e.g. [0.0, 0.5, 1.0], or []")
    if cfg.threads is not None:
        _int("threads", cfg.threads, 1)
    if cfg.progress is not True and cfg.progress is not False:
        _int("progress", cfg.progress, 1, " (steps between progress-bar redraws), or false for no bar")
    stop = cfg.get("stop_when_solved", False)
    if not isinstance(stop, bool) or (stop and task_cls.solved_text is None):
        raise ConfigError(f"stop_when_solved={stop!r} is invalid for task {task_cls.name}: valid: false, or true for a task "
                          f"with a solved criterion ({', '.join(n for n in tasks.names() if tasks.task_class(n).solved_text)})")
    task_opts = tasks.options(cfg.task)
    tasks.check_option_names(cfg.task.name, task_opts)
    try:
        cells.check_option_names(cfg.cell.name, cells.options(cfg.cell))
    except TypeError as e:
        raise ConfigError(str(e)) from None
    task_cls.check_options(cfg.gap, **task_opts)
    on_gpu = cfg.trainer.accelerator in ("gpu", "cuda") or (cfg.trainer.accelerator == "auto" and _cuda())
    check_memory(cfg.task.batch_size, task_cls.steps_for_gap(cfg.gap, **task_opts), cfg.cell.hidden_size,
                 "gpu" if on_gpu else "cpu")
    _writable_dir(cfg.results_dir)
    if cfg.logger.name == "wandb" and cfg.wandb.mode == "online" and not _wandb_credentials():
        raise ConfigError("wandb.mode=online needs W&B credentials (run `wandb login` or set WANDB_API_KEY); "
                          "or use wandb.mode=offline and `wandb sync` later")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def available_memory_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def estimate_activation_bytes(batch: int, seq_len: int, hidden: int, bytes_per_value: int = 4) -> int:
    """Activations kept for backpropagation through time: ~12 [B, H] tensors per step covers the
    LSTM family's gates, cell states and their nonlinearities, plus the read-out."""
    return 12 * batch * seq_len * hidden * bytes_per_value


def check_memory(batch: int, seq_len: int, hidden: int, device: str) -> None:
    if device != "cpu":
        return  # the GPU's own OOM error is already precise; the estimate is for host RAM
    need, have = estimate_activation_bytes(batch, seq_len, hidden), available_memory_bytes()
    if need > 0.8 * have:
        raise ConfigError(
            f"batch {batch} x {seq_len} steps x hidden {hidden} needs ~{need / 2**30:.1f} GiB for "
            f"backpropagation through time but {have / 2**30:.1f} GiB is available; lower task.batch_size or gap")
