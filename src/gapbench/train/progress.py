"""Lightning's progress bar, labelled for step-budgeted jobs: `train` instead of `Training` then
`Epoch 0` (a job is one endless epoch), no `v_num` (the logger's version, meaningless here), and no
bar for the test pass (a second or two, reported by the job's end line); the training bar is
cleared when the job ends, so a finished job leaves its start and end lines only."""
from __future__ import annotations

import math

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

    def init_test_tqdm(self):
        return Tqdm(disable=True)

    def on_train_epoch_start(self, trainer, *_):
        # as Lightning's, less the "Epoch N" description (a job trains one endless epoch)
        total = self.total_train_batches
        self.train_progress_bar.reset(total=None if total is None or math.isinf(total) else int(total))
        self.train_progress_bar.initial = 0

    def get_metrics(self, trainer, pl_module):
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items
