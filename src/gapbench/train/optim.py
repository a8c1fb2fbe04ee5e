"""The optimiser and learning-rate schedule of a job, from the `optim` config group.

    optim.name: adam | sgd          (plain SGD: no momentum, as in Zaremba et al. 2014)
    optim.lr, optim.weight_decay
    optim.decay_after_epochs: E     keep lr for E epochs, then multiply it by decay_factor at the start
    optim.decay_factor: f           of every further epoch: lr_k = lr * f ** max(0, epoch(k) + 1 - E);
                                    null = a constant rate

Parameter groups (`param_groups`): a model may declare parameters its paper trains at a rate of their
own (`optim_groups`, cells.base.ParamGroup; expRNN's orthogonal parameter at a tenth); with
`cell.recipe: paper` (the default) they get `lr_scale` x optim.lr in the configured optimiser, and the
schedule scales every group alike. `cell.recipe: none`: every parameter at optim.lr.

An epoch is one pass over the task's training data, `task.steps_per_epoch` steps (the language models
define it; synthetic tasks draw fresh data every step and have none). The schedule is a LambdaLR stepped
every training step, so it is part of the checkpoint and a resumed run continues it exactly.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch

OPTIMIZERS = ("adam", "sgd")
RECIPES = ("paper", "none")  # cell.recipe: the model's own parameter groups, or one rate for every parameter


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


def param_groups(model: torch.nn.Module, recipe: str = "paper") -> list[dict[str, Any]]:
    """`model`'s parameters as optimiser groups: first every parameter at optim.lr, then, with recipe
    "paper", one group per ParamGroup that a model inside `model` declares (each layer of a stack, by
    module order), {"params", "name", "lr_scale"}. Every parameter appears once."""
    if recipe not in RECIPES:
        raise OptimError(f"cell.recipe={recipe!r} is invalid; valid: {', '.join(RECIPES)}")
    own: list[dict[str, Any]] = []
    if recipe == "paper":
        for prefix, module in model.named_modules():
            named = dict(module.named_parameters())
            for group in getattr(module, "optim_groups", ()):
                own.append({"params": [named[p] for p in group.params], "name": f"{prefix}.{group.name}".lstrip("."),
                             "lr_scale": group.lr_scale})
    taken = {id(p) for g in own for p in g["params"]}
    return [{"params": [p for p in model.parameters() if id(p) not in taken]}, *own]


def build(params: Iterable[torch.nn.Parameter] | list[dict[str, Any]], cfg: dict[str, Any], steps_per_epoch: int | None):
    """(optimizer, LambdaLR or None); `params` as torch takes them, groups with their `lr_scale` (param_groups)."""
    check(cfg)
    lr, wd = cfg["lr"], cfg.get("weight_decay", 0.0)
    params = list(params)
    if params and isinstance(params[0], dict):
        params = [{**g, "lr": lr * g.get("lr_scale", 1.0)} for g in params]
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
