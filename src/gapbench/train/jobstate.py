"""What a job keeps on disk to resume, and who may write it.

Every resume file (checkpoint, W&B run id, rerun marker, lock owner) is written to a temporary
file in its own folder, fsynced and renamed over the old one, so a kill at any moment leaves the
old file or the new one, never a torn one, whatever filesystem `$TMPDIR` is on. A file that is
unreadable anyway (a disk fault, a copy gone wrong) is moved aside with one warning line naming it.

A job holds `JobLock` in its folder while it runs, so two starts of one job (two shells, two
overlapping sweeps, two machines sharing the filesystem) never train it twice at once.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from filelock import FileLock, Timeout
from lightning.pytorch.plugins.io import TorchCheckpointIO

from gapbench.paths import atomic_write, remove_stale_temps

log = logging.getLogger("gapbench")

LAST = "last.ckpt"
PREVIOUS = "last.prev.ckpt"   # the checkpoint before last.ckpt, kept as a hard link (no copy)
WANDB_ID = "wandb_id"
RERUN = "rerun.json"
LOCK = ".lock"
OWNER = "owner.json"
WANDB_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


# -- atomic files (gapbench.paths.atomic_write) --------------------------------------------------

def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def move_aside(path: Path, why: str) -> Path:
    """Rename an unreadable resume file to <name>.unreadable-<time>, keeping it for inspection."""
    aside = path.with_name(f"{path.name}.unreadable-{dt.datetime.now():%Y%m%dT%H%M%S}-{secrets.token_hex(2)}")
    os.replace(path, aside)
    log.warning("unreadable %s (%s) moved to %s", path, why, aside.name)
    return aside


# -- checkpoints --------------------------------------------------------------------------------

class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO with an atomic, fsynced save in the checkpoint's own folder.
    The checkpoint being replaced stays as last.prev.ckpt (a hard link) for `usable_checkpoint`."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        previous = path.with_name(PREVIOUS) if path.name == LAST else None
        atomic_write(path, lambda f: torch.save(checkpoint, f), keep_previous=previous)


def _readable(path: Path) -> str | None:
    """None if torch can load the checkpoint, else why not (one line)."""
    if path.stat().st_size == 0:
        return "empty file"
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - any failure to load means it cannot be resumed from
        return f"{type(e).__name__}: {str(e).strip().splitlines()[0][:120] if str(e).strip() else ''}".rstrip(": ")
    return None


def usable_checkpoint(job_dir: Path) -> Path | None:
    """The checkpoint to resume from: last.ckpt, else the one before it; unreadable ones are moved aside."""
    for name in (LAST, PREVIOUS):
        path = Path(job_dir) / name
        if not path.exists():
            continue
        why = _readable(path)
        if why is None:
            return path
        move_aside(path, why)
    return None


class WallClock(L.Callback):
    """A job's wall time over all its segments: each checkpoint carries the time up to it, and a
    job resumed from its own checkpoint goes on counting from there (steps redone after that
    checkpoint count once). `earlier=False`: a start from another job's checkpoint (continuation)
    counts its own time only."""

    def __init__(self, earlier: bool = True):
        self.earlier, self.before, self.started = earlier, 0.0, time.perf_counter()

    def seconds(self) -> float:
        return self.before + time.perf_counter() - self.started

    def state_dict(self) -> dict[str, float]:
        return {"wall_s": self.seconds()}

    def load_state_dict(self, state: dict[str, float]) -> None:
        if self.earlier:
            self.before = float(state.get("wall_s", 0.0))


def clear_resume_state(job_dir: Path) -> None:
    """Forget a job's progress (a `rerun=true` starting over): checkpoints and W&B id; the lock stays."""
    for name in (LAST, PREVIOUS, WANDB_ID, RERUN):
        (Path(job_dir) / name).unlink(missing_ok=True)


# -- W&B run id ---------------------------------------------------------------------------------

def wandb_run_id(job_dir: Path) -> str:
    """The job's W&B run id, created once and kept, so a resumed job continues the same W&B run."""
    path = Path(job_dir) / WANDB_ID
    if path.exists():
        try:
            run_id = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as e:
            run_id, why = "", str(e)
        else:
            why = f"not a W&B run id: {run_id[:20]!r}"
        if WANDB_ID_RE.fullmatch(run_id):
            return run_id
        move_aside(path, why)
    run_id = secrets.token_hex(6)
    atomic_write_text(path, run_id)
    return run_id


# -- rerun=true -----------------------------------------------------------------------------------

def start_rerun(job_dir: Path, replaces: dict[str, Any]) -> bool:
    """A `rerun=true` job replaces the finished row `replaces`. The first start forgets the old
    progress and notes which row it replaces; a start after an interruption finds that note and
    resumes. Returns True when this start resumes an interrupted rerun."""
    marker = Path(job_dir) / RERUN
    # finished_at has whole seconds: two rows finished in the same second would share it; wall_s tells them apart
    stamp = f"{replaces.get('finished_at')}|{replaces.get('wall_s')!r}"
    try:
        if json.loads(marker.read_text()).get("replaces") == stamp:
            return True
    except (OSError, ValueError, AttributeError):
        pass
    clear_resume_state(job_dir)
    atomic_write_text(marker, json.dumps({"replaces": stamp}))
    return False


# -- one job, one runner --------------------------------------------------------------------------

class JobLock:
    """A job's lock in its folder.

    The lock is `filelock.FileLock` (flock: released by the kernel when its process dies, so a
    killed job never leaves a lock that blocks; Linux NFS clients map it to NFS byte-range locks,
    which other machines see). Beside it, owner.json names the holder and is touched every
    `heartbeat_s`: on a filesystem whose locks other machines cannot see, a fresh owner.json from
    another host still refuses the start, and one older than `stale_after_s` is taken over.
    """

    def __init__(self, job_dir: Path, heartbeat_s: float = 30.0, stale_after_s: float = 600.0):
        self.job_dir = Path(job_dir)
        self.heartbeat_s, self.stale_after_s = heartbeat_s, stale_after_s
        self.holder: dict[str, Any] | None = None
        self._flock = FileLock(str(self.job_dir / LOCK), timeout=0)
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _owner(self) -> dict[str, Any] | None:
        path = self.job_dir / OWNER
        try:
            owner = json.loads(path.read_text())
            owner["age_s"] = time.time() - path.stat().st_mtime
            return owner if isinstance(owner, dict) else None
        except (OSError, ValueError, TypeError):
            return None

    def acquire(self) -> bool:
        self.job_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._flock.acquire()
        except Timeout:
            self.holder = self._owner() or {}
            return False
        owner = self._owner()
        if owner and owner.get("host") != socket.gethostname() and owner["age_s"] < self.stale_after_s:
            self._flock.release()  # held on another machine whose lock this filesystem does not share
            self.holder = owner
            return False
        for name in (LAST, PREVIOUS, WANDB_ID, RERUN, OWNER):  # left by a killed write; no one else writes them now
            remove_stale_temps(self.job_dir, name)
        atomic_write_text(self.job_dir / OWNER, json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(),
             "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}))
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="gapbench-lock-heartbeat", daemon=True)
        self._beat.start()
        return True

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                os.utime(self.job_dir / OWNER)
            except OSError:
                pass

    def describe_holder(self) -> str:
        h = self.holder or {}
        if not h:
            return "another process"
        return f"host {h.get('host', '?')}, pid {h.get('pid', '?')}, since {h.get('since', '?')}"

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
            self._beat = None
        (self.job_dir / OWNER).unlink(missing_ok=True)
        self._flock.release()


CONFIG_KEY = "gapbench_config"


class ConfigInCheckpoint(L.Callback):
    """Stores the job's resolved config in every checkpoint, under checkpoint['gapbench_config']."""

    def __init__(self, config: dict[str, Any]):
        self.config = {k: v for k, v in config.items() if k != "hydra"}

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        checkpoint[CONFIG_KEY] = self.config


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A gapbench checkpoint's contents (tensors on the CPU; the job's config under CONFIG_KEY).
    ValueError, one line, for a missing file, a file that is no PyTorch checkpoint, or one without
    gapbench's config."""
    p = Path(path).expanduser()
    example = "give a job's checkpoint, e.g. results/jobs/RUN_ID/last.ckpt"
    if not p.is_file():
        raise ValueError(f"ckpt_path={path} is not a file; {example}")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # empty, truncated, or not a checkpoint at all: torch says so in many ways
        why = "an empty file" if p.stat().st_size == 0 else type(e).__name__
        raise ValueError(f"ckpt_path={path} is not a readable checkpoint ({why}); {example}") from None
    if not isinstance(ckpt, dict) or CONFIG_KEY not in ckpt:
        raise ValueError(f"ckpt_path={path} holds no gapbench config (written by an older gapbench, or not by "
                         "gapbench); evaluate it by running its job's command again")
    return ckpt
