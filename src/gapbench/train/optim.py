"""The optimiser and learning-rate schedule of a job, from the `optim` config group.

    optim.name: adam | sgd          (plain SGD: no momentum, as in Zaremba et al. 2014)
    optim.lr, optim.weight_decay
    optim.decay_after_epochs: E     keep lr for E epochs, then multiply it by decay_factor at the start
    optim.decay_factor: f           of every further epoch: lr_k = lr * f ** max(0, epoch(k) + 1 - E);
                                    null = a constant rate

An epoch is one pass over the task's training data, `task.steps_per_epoch` steps (the language models
define it; synthetic tasks draw fresh data every step and have none). The schedule is a LambdaLR stepped
every training step, so it is part of the checkpoint and a resumed run continues it exactly.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch

OPTIMIZERS = ("adam", "sgd")


class OptimError(ValueError):
    """A bad optim.* value; shown as one line."""


def check(cfg: dict[str, Any]) -> None:
    name = cfg.get("name", "adam")
    if name not in OPTIMIZERS:
        raise OptimError(f"unknown optim.name '{name}'; valid: {', '.join(OPTIMIZERS)}")
    after, factor = cfg.get("decay_after_epochs"), cfg.get("decay_factor", 0.5)
    if after is not None and (isinstance(after, bool) or not isinstance(after, (int, float)) or after < 0):
        raise OptimError(f"optim.decay_after_epochs={after!r} is invalid; valid: a number of epochs >= 0, or null "
                         "(constant rate)")
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor <= 1:
        raise OptimError(f"optim.decay_factor={factor!r} is invalid; valid: a number in (0, 1]")


def decay(step: int, steps_per_epoch: int, after: float, factor: float) -> float:
    """The rate multiplier at training step `step` (0-based)."""
    return factor ** max(0, step // steps_per_epoch + 1 - after)


def build(params: Iterable[torch.nn.Parameter], cfg: dict[str, Any], steps_per_epoch: int | None):
    """(optimizer, LambdaLR or None)."""
    check(cfg)
    lr, wd = cfg["lr"], cfg.get("weight_decay", 0.0)
    if cfg.get("name", "adam") == "sgd":
        opt = torch.optim.SGD(params, lr=lr, weight_decay=wd)
    else:
        opt = torch.optim.Adam(params, lr=lr, weight_decay=wd)
    after = cfg.get("decay_after_epochs")
    if after is None:
        return opt, None
    if not steps_per_epoch:
        raise OptimError("optim.decay_after_epochs needs a task with epochs (lm_word, lm_char); this task draws "
                         "fresh data every step: set optim.decay_after_epochs=null")
    factor = cfg.get("decay_factor", 0.5)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: decay(step, steps_per_epoch, after, factor))


def steps_for_epochs(epochs: float, steps_per_epoch: int) -> int:
    return math.ceil(epochs * steps_per_epoch)
