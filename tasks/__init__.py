"""Benchmark tasks, chosen by short name (`task=copy`). Each module holds one task; see base.Task.

A task from the user's own package needs no registry line: `task=custom task.target=pkg.module.Class`
names it by its import path (conf/task/custom.yaml), checked like the registered ones."""
from __future__ import annotations

import importlib
import inspect

from gapbench.registry import import_class
from gapbench.tasks.base import Task, TaskError

TASKS: dict[str, tuple[str, str]] = {
    "copy": ("gapbench.tasks.copy", "CopyMemory"),
    "adding": ("gapbench.tasks.adding", "Adding"),
    "lm_word": ("gapbench.tasks.lm_word", "WordLM"),
    "lm_char": ("gapbench.tasks.lm_char", "CharLM"),
    "translation": ("gapbench.tasks.translation", "Translation"),
    "selective_copy": ("gapbench.tasks.selective_copy", "SelectiveCopy"),
    "assoc_recall": ("gapbench.tasks.assoc_recall", "AssocRecall"),
    "seq_mnist": ("gapbench.tasks.seq_mnist", "SeqMNIST"),
    "pmnist": ("gapbench.tasks.seq_mnist", "PermutedSeqMNIST"),
    "poly_music": ("gapbench.tasks.poly_music", "PolyMusic"),
    "speech_digits": ("gapbench.tasks.speech_digits", "SpeechDigits"),
    "captioning": ("gapbench.tasks.captioning", "Captioning"),
}


def names() -> list[str]:
    return list(TASKS)


def find(name: str) -> type[Task] | None:
    """The task class of `name`, or None for a name no longer registered (old rows in a store)."""
    try:
        return task_class(name)
    except (TaskError, ImportError):
        return None


# what a task class must declare (base.Task's class attributes without a default)
CONTRACT = ("name", "title", "score_name", "score_title", "higher_is_better", "gap_meaning")


def task_class(name: str) -> type[Task]:
    """The class of a registered task, or of an import path (a task from the user's own package)."""
    if name in TASKS:
        module, cls = TASKS[name]
        return getattr(importlib.import_module(module), cls)
    if name is None:
        raise TaskError("task=custom needs task.target=package.module.Class, the import path of your task")
    if "." not in str(name):
        raise TaskError(f"unknown task '{name}'; valid tasks: {', '.join(TASKS)}, "
                        "or your own task: task=custom task.target=package.module.Class")
    try:
        cls = import_class(name, Task, "task.target")
    except ValueError as e:
        raise TaskError(str(e)) from None
    missing = [a for a in CONTRACT if not hasattr(cls, a)] + sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        raise TaskError(f"task.target={name} does not define {', '.join(missing)} (see gapbench.tasks.base.Task)")
    return cls


def options(task_cfg) -> dict:
    """A task config group minus the keys gapbench itself consumes: the task's own options."""
    return {k: v for k, v in dict(task_cfg).items() if k not in ("name", "batch_size", "lr", "target")}


def check_option_names(name: str, opts: dict) -> None:
    cls = task_class(name)
    valid = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "gap", "seed", "batch_size")]
    unknown = sorted(set(opts) - set(valid))
    if unknown:
        raise TaskError(f"task {name} has no option {', '.join(unknown)}; its options: {', '.join(valid)}")


def build_task(name: str, gap: int, seed: int, batch_size: int, **opts) -> Task:
    check_option_names(name, opts)
    return task_class(name)(gap, seed, batch_size, **opts)
