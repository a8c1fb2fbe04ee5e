"""Lightning glue: a LightningModule that trains any Task, and a DataModule serving its batches."""
from __future__ import annotations

import itertools
import math

import lightning.pytorch as L
import torch
from torch.utils.data import DataLoader, IterableDataset

from gapbench.train import optim
from gapbench.tasks.base import Task


class Diverged(RuntimeError):
    def __init__(self, step: int, loss: float):
        super().__init__(f"training loss became {loss} at step {step}")
        self.step, self.loss = step, loss


class _StepTicks(IterableDataset):
    """Endless placeholders: the real batch is generated on the device in training_step, from
    (seed, global_step), so resuming at step k replays exactly the batches a full run would see."""

    def __iter__(self):
        return itertools.repeat(0)


class TaskData(L.LightningDataModule):
    def __init__(self, task: Task):
        super().__init__()
        self.task = task

    def train_dataloader(self):
        return DataLoader(_StepTicks(), batch_size=None)

    def val_dataloader(self):
        return DataLoader(self.task.eval_batches("val"), batch_size=None)

    def test_dataloader(self):
        return DataLoader(self.task.eval_batches("test"), batch_size=None)


class GapModule(L.LightningModule):
    def __init__(self, task: Task, model: torch.nn.Module, lr: float = 1e-3, weight_decay: float = 0.0,
                 optim: dict | None = None):
        super().__init__()
        self.task, self.model = task, model
        self.lr, self.weight_decay = lr, weight_decay
        self.optim = {**(optim or {}), "lr": lr, "weight_decay": weight_decay}  # name and schedule: gapbench.train.optim
        self._eval_outputs: list[dict] = []
        self.test_metrics: dict[str, float] = {}
        self.val_metrics: dict[str, float] = {}  # the latest validation, kept for the run's row
        self.val_step = -1                       # the global step it was taken at

    def training_step(self, _tick, batch_idx):
        # under DDP each rank draws its own batches; on one device this is just global_step
        index = self.global_step * self.trainer.world_size + self.trainer.global_rank
        if self.trainer.overfit_batches:  # debug=overfit: the same few batches over and over
            index = batch_idx
        batch = self.task.train_batch(index, self.device)
        loss, logs = self.task.training_loss(self.model, batch)
        if not torch.isfinite(loss):
            raise Diverged(self.global_step, loss.item())
        # self.log costs ~0.8 ms a call here, a sixth of a small step: log only on the steps the
        # Trainer writes to the logger (every trainer.log_every_n_steps; the progress bar follows)
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self.log("train/loss", loss, prog_bar=True)
            for key, value in logs.items():
                self.log(f"train/{key}", value, prog_bar=key == self.task.score_name)
        return loss

    def _eval_step(self, batch):
        self._eval_outputs.append(self.task.eval_step(self.model, batch))

    def _eval_end(self, split: str) -> dict[str, float]:
        metrics = self.task.eval_metrics(self._eval_outputs)
        self._eval_outputs = []
        for key, value in metrics.items():
            self.log(f"{split}/{key}", float(value), prog_bar=split == "val" and key == self.task.score_name,
                     batch_size=1, sync_dist=True)  # under DDP every rank holds the same value
        return metrics

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch)

    def on_validation_epoch_end(self):
        self.val_metrics = {k: float(v) for k, v in self._eval_end("val").items()}
        self.val_step = self.global_step

    def test_step(self, batch, batch_idx):
        self._eval_step(batch)

    def on_test_epoch_end(self):
        self.test_metrics = {k: float(v) for k, v in self._eval_end("test").items()}

    def configure_optimizers(self):
        groups = optim.param_groups(self.model, self.optim.get("recipe", "paper"))
        opt, schedule = optim.build(groups, self.optim, getattr(self.task, "steps_per_epoch", None))
        if schedule is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # a task with state between training steps (the LMs' carried recurrent state) keeps it in checkpoints
    def on_save_checkpoint(self, checkpoint):
        if hasattr(self.task, "checkpoint_state"):
            checkpoint["task_state"] = self.task.checkpoint_state()

    def on_load_checkpoint(self, checkpoint):
        if "task_state" in checkpoint and hasattr(self.task, "load_checkpoint_state"):
            self.task.load_checkpoint_state(checkpoint["task_state"])


def finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
