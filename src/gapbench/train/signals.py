"""SIGTERM and SIGINT: a job stops at the next step boundary, saves its checkpoint, says how to
resume in one line and exits 128 + the signal number (143 for SIGTERM, 130 for SIGINT), so SLURM,
submitit, CI and shell loops see that it did not finish.

- `StopRequest` turns the signals into a flag for the job's lifetime (Lightning's own SIGTERM
  handler would raise `SIGTERMException`, a `SystemExit` with code 0, wherever the loop is).
- `StopOnSignal` is the Lightning callback that polls the flag after each training step, saves
  last.ckpt there (the same point where `ModelCheckpoint` saves) and raises `Stopped`.
- Under submitit, its pre-emption signal (USR2 unless `SUBMITIT_PREEMPT_SIGNAL`) is caught the
  same way and then handed to submitit's handler, which requeues the job; the requeued job resumes
  from last.ckpt.
- Under SLURM, a pre-empted job (SIGTERM with `PreemptTime` set) that has saved requeues itself
  (`gapbench.sweep.slurm.requeue_if_preempted`): with a grace period SLURM would take its exit 143 for a
  failure; after `scancel` the job is not requeued.
- `forward_to_workers` is installed in the process that launched a sweep: it passes the signal to
  its worker processes (joblib, submitit local), waits until each has saved and exited, and exits
  itself, so no worker goes on training after its sweep is gone.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import lightning.pytorch as L

from gapbench.sweep import slurm

log = logging.getLogger("gapbench")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
WORKER_GRACE_S = 120.0  # the launcher waits this long for its workers to save, then kills them


class Stopped(Exception):
    """Raised from inside Lightning's loop after the checkpoint is saved."""

    def __init__(self, signum: int, step: int, saved: bool, in_test: bool = False):
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}")
        self.signum, self.step, self.saved, self.in_test = signum, step, saved, in_test


class JobInterrupted(SystemExit):
    """Leaves the process with 128 + signal number once the job has cleaned up."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


def _submitit_signal() -> int | None:
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)


class StopRequest:
    """Within `with StopRequest() as stop:`, SIGTERM/SIGINT (and submitit's pre-emption signal)
    only set `stop.signum`; the previous handlers come back on exit."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}
        self.signals = tuple(s for s in (*STOP_SIGNALS, _submitit_signal()) if s is not None)

    def _note(self, signum, _frame) -> None:
        if self.signum is None:
            self.signum = signum

    def install(self) -> None:
        """(Re)take the signals; Lightning replaces the SIGTERM handler at the start of each fit/test."""
        if threading.current_thread() is not threading.main_thread():
            return
        for s in self.signals:
            previous = signal.signal(s, self._note)
            self._previous.setdefault(s, previous)

    def __enter__(self) -> "StopRequest":
        self.install()
        return self

    def __exit__(self, *exc) -> None:
        if threading.current_thread() is threading.main_thread():
            for s, handler in self._previous.items():
                signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        self._previous_handlers = self._previous
        self._previous = {}

    def leave(self) -> None:
        """Exit for the signal received, after the job cleaned up. A submitit pre-emption goes to
        submitit's own handler (checkpoint and requeue). In a joblib worker the exception goes
        back to the launcher, and the worker refuses any further job (`refuse_if_stopping`)."""
        global _STOPPED_BY
        assert self.signum is not None
        _STOPPED_BY = self.signum
        previous = getattr(self, "_previous_handlers", {}).get(self.signum)
        if self.signum == _submitit_signal() and callable(previous):
            previous(self.signum, None)  # requeues and exits
        if self.signum == signal.SIGTERM and slurm.requeue_if_preempted():
            log.warning("pre-empted: requeued; the job resumes from its checkpoint when SLURM starts it again")
        raise JobInterrupted(self.signum)


_STOPPED_BY: int | None = None  # set once a job of this process was stopped by a signal


def refuse_if_stopping() -> None:
    """A worker process whose job was stopped takes no further job of its (stopping) sweep."""
    if _STOPPED_BY is not None:
        raise JobInterrupted(_STOPPED_BY)


class StopOnSignal(L.Callback):
    """Stops fit/test at a step boundary once a stop signal arrived; saves last.ckpt first.
    Also saves last.ckpt when training ends, so a kill during the test never repeats training."""

    def __init__(self, stop: StopRequest, checkpoint: Path):
        self.stop, self.checkpoint = stop, str(checkpoint)

    def _requested(self, trainer: L.Trainer) -> bool:
        wanted = self.stop.signum is not None
        if trainer.world_size > 1:  # every rank stops at the same step
            wanted = trainer.strategy.reduce_boolean_decision(wanted, all=False)
        return wanted

    def on_train_start(self, trainer, pl_module) -> None:
        self.stop.install()
        if self._requested(trainer):  # stopped while setting up: nothing new to save
            raise Stopped(self.stop.signum or signal.SIGTERM, trainer.global_step, saved=False)

    def on_test_start(self, trainer, pl_module) -> None:
        self.stop.install()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._requested(trainer):
            trainer.save_checkpoint(self.checkpoint, weights_only=False)
            raise Stopped(self.stop.signum or signal.SIGTERM, trainer.global_step, saved=True)

    def on_train_end(self, trainer, pl_module) -> None:
        trainer.save_checkpoint(self.checkpoint, weights_only=False)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._requested(trainer):
            raise Stopped(self.stop.signum or signal.SIGTERM, trainer.global_step, saved=False, in_test=True)


# -- the launching process of a sweep ---------------------------------------------------------------

def _children() -> list[int]:
    me, kids = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == me and fields[0] != "Z":
            kids.append(int(stat.parent.name))
    return kids


def _mask(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return 0


def _has(mask: int, signum: int) -> bool:
    return bool(mask >> (signum - 1) & 1)


def _forward(signum, _frame) -> None:
    name = signal.Signals(signum).name
    print(f"{name}: stopping the sweep; running jobs save a checkpoint first; "
          "run the same command to resume", file=sys.stderr, flush=True)
    deadline = time.monotonic() + WORKER_GRACE_S
    # A worker that is running a job catches SIGTERM (its StopRequest); idle workers do not. Only
    # busy ones are signalled (an idle joblib worker killed now would make joblib SIGKILL the busy
    # ones), again and again until none is busy: a worker may take a new job meanwhile.
    while time.monotonic() < deadline:
        busy = [pid for pid in _children() if _has(_mask(pid, "SigCgt"), signal.SIGTERM)]
        if not busy:
            break
        for pid in busy:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    for pid in _children():  # idle workers, and any job past the grace period
        if not _has(_mask(pid, "SigIgn"), signal.SIGTERM):  # leave resource trackers to clean up
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    logging.shutdown()
    os._exit(128 + signum)


def forward_to_workers() -> None:
    """In the process that launches a sweep: SIGTERM/SIGINT stop its workers, then itself.
    While a job runs in this very process (basic launcher), that job's `StopRequest` takes over."""
    if Path("/proc").is_dir():
        for s in STOP_SIGNALS:
            signal.signal(s, _forward)
