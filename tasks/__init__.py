"""Benchmark tasks, chosen by short name (`task=copy`). Each module holds one task; see base.Task."""
from __future__ import annotations

import importlib

from gapbench.tasks.base import Task, TaskError

TASKS: dict[str, tuple[str, str]] = {
    "copy": ("gapbench.tasks.copy", "CopyMemory"),
    "adding": ("gapbench.tasks.adding", "Adding"),
}


def names() -> list[str]:
    return list(TASKS)


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise TaskError(f"unknown task '{name}'; valid tasks: {', '.join(TASKS)}")
    module, cls = TASKS[name]
    return getattr(importlib.import_module(module), cls)


def build_task(name: str, gap: int, seed: int, batch_size: int, **opts) -> Task:
    try:
        return task_class(name)(gap, seed, batch_size, **opts)
    except TypeError as e:  # an option the task does not take
        raise TaskError(f"task {name}: {e}") from None
