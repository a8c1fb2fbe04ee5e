"""Quiet by default: what carries no information for a gapbench user is filtered where it starts.

Each filter names one known message; nothing else is hidden. `verbose=true` skips all of this.
"""
from __future__ import annotations

import logging
import os
import warnings

# Lightning's rank-zero INFO lines printed for every Trainer, identical in every job of a sweep.
LIGHTNING_BANNERS = ("GPU available:", "TPU available:", "HPU available:", "LOCAL_RANK:", "💡 Tip:",
                     "`Trainer.fit` stopped: `max_steps=", "`Trainer.fit` stopped: `max_time", "`Trainer(limit_",
                     "`Trainer(overfit_batches=", "Restoring states from the checkpoint", "Restored all states from",
                     "You are using a CUDA device")  # the Tensor Cores hint: gapbench sets the precision (key tf32)
LIGHTNING_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                     "lightning.pytorch.accelerators.cuda")


def _not_a_banner(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(LIGHTNING_BANNERS)


def quiet(verbose: bool, wandb: bool = False) -> None:
    """Call before torch, Lightning and W&B do any work in this process (idempotent)."""
    # a log line that cannot be written (a full disk under W&B's or Hydra's log file) is dropped, not
    # reported with a traceback per line: W&B alone printed ~1,000 of them on a full disk
    logging.raiseExceptions = False
    if verbose:
        return
    # Lightning's advice to launch with srun, on any host with SLURM installed: gapbench's SLURM jobs
    # go through hydra/launcher=slurm (submitit), and a local job is not meant for srun
    warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system but is not used")
    # torch 2.13's pytree deprecation, raised from inside Lightning; nothing a user can act on
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\). is deprecated", category=FutureWarning)
    # Lightning, wherever SLURM's client is installed, on every job not started by srun (a local run)
    warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system but is not used")
    # gapbench's loaders serve batches generated on the device, or small fixed eval sets: workers would not help
    warnings.filterwarnings("ignore", message=r".*does not have many workers which may be a bottleneck")
    # a continued job starts from an earlier job's checkpoint, written in that job's folder
    warnings.filterwarnings("ignore", message=r"The dirpath has changed from")
    # debug=overfit: Lightning turns shuffling off itself and says so; gapbench's training data never shuffles
    warnings.filterwarnings("ignore", message=r"You requested to overfit but enabled train dataloader shuffling")
    # W&B prints ~35 `wandb:` lines per run (banner, sync hints, run summary); the row holds the result
    os.environ.setdefault("WANDB_SILENT", "true")
    if wandb and os.environ["WANDB_SILENT"] == "true":
        import wandb as wb

        # silent from now on: W&B applies WANDB_SILENT only once its first run is set up, after it has
        # warned that the `anonymous` argument Lightning always passes "has no effect"
        wb.termsetup(wb.Settings(silent=True), None)
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if _not_a_banner not in logger.filters:
            logger.addFilter(_not_a_banner)


def one_line_warnings(category: type[Warning]) -> None:
    """Show warnings of `category` as one `warning: ...` line, without the source line Python adds."""
    shown = warnings.formatwarning
    if getattr(shown, "one_line", None) is not None:
        shown.one_line.add(category)
        return

    def formatwarning(message, cat, filename, lineno, line=None):
        if issubclass(cat, tuple(formatwarning.one_line)):
            return f"warning: {message}\n"
        return shown(message, cat, filename, lineno, line)

    formatwarning.one_line = {category}
    warnings.formatwarning = formatwarning
