"""Lightning's progress bar, labelled for step-budgeted jobs: `train` instead of `Epoch 0` (a job is
one endless epoch) and without `v_num` (the logger's version, meaningless here)."""
from __future__ import annotations

from lightning.pytorch.callbacks import TQDMProgressBar


class StepProgressBar(TQDMProgressBar):
    def on_train_epoch_start(self, trainer, *args, **kwargs):
        super().on_train_epoch_start(trainer, *args, **kwargs)
        self.train_progress_bar.set_description("train")

    def get_metrics(self, trainer, pl_module):
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items
