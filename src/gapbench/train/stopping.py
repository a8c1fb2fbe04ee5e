"""Stop when solved: check the task's own criterion (Task.is_solved) on the validation set at every
validation (trainer.val_check_interval) and record the first step at which it held.

With `stop=True` training ends there (trainer.should_stop, as Lightning's EarlyStopping does) and the
job goes on to test; with `stop=False` only `solved_at` is recorded, at no cost. Tasks without a
criterion (solved_text None) never record a step.
"""
from __future__ import annotations

from typing import Any

import lightning.pytorch as L

from gapbench.tasks.base import Task


class StopWhenSolved(L.Callback):
    def __init__(self, task: Task, stop: bool):
        self.task, self.stop = task, stop
        self.solved_at: int | None = None  # global step of the first validation that solved the task
        self.stopped = False

    @property
    def state_key(self) -> str:
        return "StopWhenSolved"

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        score = trainer.callback_metrics.get(f"val/{self.task.score_name}")
        solved = score is not None and bool(self.task.is_solved(float(score), self.task.baseline))
        solved = trainer.strategy.reduce_boolean_decision(solved, all=True)
        if not solved:
            return
        if self.solved_at is None:
            self.solved_at = int(trainer.global_step)
        if self.stop and not trainer.should_stop:
            trainer.should_stop = self.stopped = True

    # a job resumed from last.ckpt keeps the step at which it was first solved
    def state_dict(self) -> dict[str, Any]:
        return {"solved_at": self.solved_at}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.solved_at = state_dict.get("solved_at")
