"""Progress of a job's training.

On a terminal: Lightning's progress bar, labelled for step-budgeted jobs: `train` instead of
`Training` then `Epoch 0` (a job is one endless epoch), no `v_num` (the logger's version,
meaningless here), and no bar for the test pass (a second or two, reported by the job's end line);
the training and validation bars are cleared when they end, so a finished job leaves its start and
end lines only.

Where a bar cannot be redrawn in place (stdout is a file: nohup, SLURM, `> log`; or parallel
joblib workers sharing one terminal) a bar's every redraw would stay in the output, so `PlainProgress`
logs one plain line every `plain_every(...)` steps instead: step, loss, speed and ETA.
"""
from __future__ import annotations

import logging
import math
import sys
import time

import lightning.pytorch as L

from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm


class StepProgressBar(TQDMProgressBar):
    @property
    def train_description(self) -> str:
        return "train"

    def init_train_tqdm(self):
        bar = super().init_train_tqdm()
        bar.leave = False  # the job's end line replaces it
        return bar

    def init_validation_tqdm(self):
        bar = super().init_validation_tqdm()
        bar.leave = False  # also for the validation after fit (trainer.validate), which has no main bar
        return bar

    def init_test_tqdm(self):
        return Tqdm(disable=True)

    def on_train_epoch_start(self, trainer, *_):
        # counted in steps against trainer.max_steps, once: a job trains one endless epoch, except under
        # overfit_batches (one batch an epoch), whose bar would otherwise restart at 1/1 every step
        if trainer.current_epoch > 0 and self.train_progress_bar.total:
            return
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else self.total_train_batches
        self.train_progress_bar.reset(total=None if total is None or math.isinf(total) else int(total))
        self.train_progress_bar.initial = 0
        self.train_progress_bar.n = trainer.global_step  # a resumed job starts where it stopped

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if self._should_update(step, self.train_progress_bar.total):
            self.train_progress_bar.n = step
            self.train_progress_bar.refresh()
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

    def get_metrics(self, trainer, pl_module):
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items


log = logging.getLogger("gapbench")
PLAIN_LINES = 20  # a plain-line job logs about this many progress lines, whatever its budget


def can_redraw(parallel_workers: bool = False) -> bool:
    """Whether a progress bar can redraw itself in place: stdout is a terminal, not shared by workers."""
    return not parallel_workers and sys.stdout.isatty()


def plain_every(progress_every: int, max_steps: int) -> int:
    """Steps between plain progress lines: the bar's interval, but at most ~PLAIN_LINES lines per job."""
    return max(progress_every, math.ceil(max_steps / PLAIN_LINES))


class LossTrace(L.Callback):
    """The training loss at the first and the last step (debug=overfit's end line reports them)."""

    def __init__(self) -> None:
        self.first: tuple[int, float] | None = None
        self.last: tuple[int, float] | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        self.last = (trainer.global_step, float(loss))
        self.first = self.first or self.last


class PlainProgress(L.Callback):
    """`train 4000/20000 (20%)  loss 0.412  310 steps/s  ETA 0:52` every `every` steps, as a log line."""

    def __init__(self, every: int, label: str = "") -> None:
        self.every, self.label = every, label
        self._t0, self._step0 = 0.0, 0

    def on_train_start(self, trainer, pl_module) -> None:
        self._t0, self._step0 = time.perf_counter(), trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.every or step == self._step0:
            return
        rate = (step - self._step0) / max(time.perf_counter() - self._t0, 1e-9)
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        loss = trainer.progress_bar_metrics.get("train/loss")
        left = (total - step) / rate if total else math.nan
        log.info("%strain %d%s  %s%.0f steps/s%s", self.label, step, f"/{total} ({step / total:.0%})" if total else "",
                 f"loss {float(loss):.4g}  " if loss is not None else "", rate,
                 f"  ETA {int(left) // 60}:{int(left) % 60:02d}" if math.isfinite(left) else "")
