"""A job's lifecycle in-process (docs/reliability.md): signals, atomic resume files, the job lock, rerun."""
import json
import logging
import os
import random
import signal
import socket
import time
from pathlib import Path

import lightning.pytorch as L
import pytest
import torch
from hydra import compose, initialize_config_dir

from gapbench.train import jobstate, signals
from gapbench.train.job import run_job
from gapbench.results import load_runs

CONF = Path(__file__).resolve().parents[1] / "conf"
TINY = ["gap=4", "cell.hidden_size=8", "trainer.max_steps=12", "trainer.max_time=null", "probe.at=[]",
        "trainer.val_check_interval=6", "task.val_size=32", "task.test_size=32", "task.eval_batch_size=32"]


def make_cfg(tmp_path, *overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=[
            f"results_dir={tmp_path}", "logger=none", "progress=false", "threads=1", *TINY, *overrides])


class SignalAt(L.Callback):
    """Sends `signum` to this process after training step `step`, as `kill` from outside would."""

    def __init__(self, signum, step):
        self.signum, self.step = signum, step

    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


@pytest.fixture(autouse=True)
def fresh_process_state(caplog):
    caplog.set_level(logging.INFO, logger="gapbench")
    signals._STOPPED_BY = None  # a stopped job marks its process as stopping; each test is a new "process"
    yield
    signals._STOPPED_BY = None


def job_dir(tmp_path) -> Path:
    (d,) = (tmp_path / "jobs").iterdir()
    return d


def saved_step(path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_saves_says_how_to_resume_exits_nonzero_and_rerun_finishes(tmp_path, signum, caplog):
    cfg = make_cfg(tmp_path, "checkpoint_every=1000")
    before = signal.getsignal(signum)  # SIG_IGN for SIGINT where pytest itself runs in the background
    with pytest.raises(SystemExit) as stopped:
        run_job(cfg, callbacks=[SignalAt(signum, 5)])
    assert stopped.value.code == 128 + signum
    lines = [r.getMessage() for r in caplog.records if "interrupted" in r.getMessage()]
    assert len(lines) == 1 and f"by {signal.Signals(signum).name} at step 6" in lines[0]
    assert "run the same command to resume" in lines[0]
    assert saved_step(job_dir(tmp_path) / "last.ckpt") == 6, "checkpoint saved at the step it stopped"
    assert len(load_runs(tmp_path)) == 0, "no row for an unfinished job"
    assert not list(job_dir(tmp_path).glob(".*.tmp")), "nothing half-written"
    assert signal.getsignal(signum) == before, "handlers restored"

    signals._STOPPED_BY = None
    row = run_job(cfg)
    assert row["status"] == "finished" and row["steps"] == 12
    assert "resuming" in caplog.text and len(load_runs(tmp_path)) == 1


def test_a_stopped_worker_takes_no_further_job(tmp_path):
    with pytest.raises(SystemExit):
        run_job(make_cfg(tmp_path), callbacks=[SignalAt(signal.SIGTERM, 2)])
    with pytest.raises(SystemExit) as again:
        run_job(make_cfg(tmp_path, "seed=1"))
    assert again.value.code == 143 and len(list((tmp_path / "jobs").iterdir())) == 1


def test_unreadable_checkpoint_moved_aside_resumes_from_the_previous_one(tmp_path, caplog):
    cfg = make_cfg(tmp_path, "checkpoint_every=2")
    with pytest.raises(SystemExit):
        run_job(cfg, callbacks=[SignalAt(signal.SIGTERM, 4)])
    d = job_dir(tmp_path)
    assert saved_step(d / "last.ckpt") == 5 and saved_step(d / "last.prev.ckpt") == 4
    (d / "last.ckpt").write_bytes((d / "last.ckpt").read_bytes()[:100])  # torn by something outside gapbench
    signals._STOPPED_BY = None
    caplog.clear()
    row = run_job(cfg)
    assert row["status"] == "finished" and row["steps"] == 12
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "gapbench"]
    assert len(warnings) == 1 and "unreadable" in warnings[0] and str(d / "last.ckpt") in warnings[0]
    assert "last.prev.ckpt" in caplog.text, "resumed from the previous good checkpoint"
    assert len(list(d.glob("last.ckpt.unreadable-*"))) == 1


@pytest.mark.parametrize("content", [b"", b"\x00\x01garbage", b"PK\x03\x04truncated zip"], ids=["empty", "garbage", "truncated"])
def test_unreadable_checkpoints_everywhere_start_over(tmp_path, content, caplog):
    cfg = make_cfg(tmp_path)
    with pytest.raises(SystemExit):
        run_job(cfg, callbacks=[SignalAt(signal.SIGTERM, 1)])
    d = job_dir(tmp_path)
    for name in ("last.ckpt", "last.prev.ckpt"):
        (d / name).write_bytes(content)
    signals._STOPPED_BY = None
    row = run_job(cfg)
    assert row["status"] == "finished" and row["steps"] == 12
    assert "Traceback" not in caplog.text and "resuming" not in caplog.text
    assert len(list(d.glob("*.unreadable-*"))) == 2


@pytest.mark.parametrize("content", [b"", b"\xff\xfe not/an id\n", b"a" * 500])
def test_garbled_wandb_id_is_moved_aside_and_replaced(tmp_path, content, caplog):
    (tmp_path / "wandb_id").write_bytes(content)
    new = jobstate.wandb_run_id(tmp_path)
    assert jobstate.WANDB_ID_RE.fullmatch(new) and (tmp_path / "wandb_id").read_text() == new
    assert len(list(tmp_path.glob("wandb_id.unreadable-*"))) == 1 and "unreadable" in caplog.text
    assert jobstate.wandb_run_id(tmp_path) == new, "a good id is kept"


def test_twenty_kills_during_checkpoint_saves_never_leave_an_unusable_checkpoint(tmp_path, monkeypatch):
    """Kills at random moments of real checkpoint saves, with $TMPDIR on another filesystem;
    then the job resumes from whatever is left and finishes."""
    tmpdir = Path("/dev/shm") if Path("/dev/shm").is_dir() else tmp_path / "elsewhere"
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    cfg = make_cfg(tmp_path, "checkpoint_every=1")
    with pytest.raises(SystemExit):
        run_job(cfg, callbacks=[SignalAt(signal.SIGTERM, 3)])
    d = job_dir(tmp_path)
    checkpoint = torch.load(d / "last.ckpt", map_location="cpu", weights_only=True)
    checkpoint["padding"] = torch.zeros(2_000_000)  # 8 MB: a save takes long enough to be cut in the middle
    io = jobstate.AtomicCheckpointIO()
    mid_write = 0
    for _ in range(20):
        pid = os.fork()
        if pid == 0:  # the saving process: saves over and over until killed
            try:
                while True:
                    io.save_checkpoint(checkpoint, d / "last.ckpt")
            finally:
                os._exit(0)
        time.sleep(random.uniform(0.0, 0.15))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        mid_write += bool(list(d.glob(".last.ckpt.*.tmp")))
        usable = jobstate.usable_checkpoint(d)
        assert usable is not None and saved_step(usable) == 4
        assert not list(d.glob("*.unreadable-*")), "every kill left a readable checkpoint"
        for stray in d.glob(".*.tmp"):
            stray.unlink()
    assert mid_write >= 5, f"only {mid_write} of 20 kills landed during a write"
    signals._STOPPED_BY = None
    row = run_job(cfg)
    assert row["status"] == "finished" and row["steps"] == 12


def test_second_start_of_a_running_job_says_so_and_moves_on(tmp_path, caplog):
    cfg = make_cfg(tmp_path)
    with pytest.raises(SystemExit):
        run_job(cfg, callbacks=[SignalAt(signal.SIGTERM, 1)])
    d = job_dir(tmp_path)
    holder = jobstate.JobLock(d)
    assert holder.acquire()
    try:
        signals._STOPPED_BY = None
        caplog.clear()
        row = run_job(cfg)
        assert row["status"] == "running elsewhere" and len(load_runs(tmp_path)) == 0
        (line,) = [r.getMessage() for r in caplog.records if r.name == "gapbench"]
        assert "running elsewhere" in line and f"pid {os.getpid()}" in line
    finally:
        holder.release()
    assert run_job(cfg)["status"] == "finished"


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    pid = os.fork()
    if pid == 0:
        lock = jobstate.JobLock(tmp_path)
        lock.acquire()
        time.sleep(60)
        os._exit(0)
    deadline = time.time() + 10
    while not (tmp_path / "owner.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    assert not jobstate.JobLock(tmp_path).acquire(), "held while its process lives"
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    lock = jobstate.JobLock(tmp_path)
    assert lock.acquire(), "a killed holder never blocks"
    assert json.loads((tmp_path / "owner.json").read_text())["pid"] == os.getpid()
    lock.release()


def test_lock_owned_on_another_machine(tmp_path):
    """A filesystem whose locks other machines cannot see: owner.json decides, and goes stale."""
    tmp_path.joinpath("owner.json").write_text(json.dumps({"host": "other-node", "pid": 1, "since": "x"}))
    lock = jobstate.JobLock(tmp_path, stale_after_s=60)
    assert not lock.acquire() and "host other-node" in lock.describe_holder()
    old = time.time() - 120
    os.utime(tmp_path / "owner.json", (old, old))
    assert lock.acquire(), "no heartbeat for longer than stale_after_s: taken over"
    assert json.loads((tmp_path / "owner.json").read_text())["host"] == socket.gethostname()
    lock.release()


def test_rerun_resumes_once_started(tmp_path, caplog):
    first = run_job(make_cfg(tmp_path))
    with pytest.raises(SystemExit):
        run_job(make_cfg(tmp_path, "rerun=true"), callbacks=[SignalAt(signal.SIGTERM, 6)])
    signals._STOPPED_BY = None
    caplog.clear()
    row = run_job(make_cfg(tmp_path, "rerun=true"))
    assert "resuming the interrupted rerun" in caplog.text and "last.ckpt" in caplog.text
    assert row["steps"] == 12 and row["finished_at"] >= first["finished_at"]
    assert len(load_runs(tmp_path)) == 1 and len(list((tmp_path / "runs" / "replaced").glob("*.json"))) == 1
    caplog.clear()
    again = run_job(make_cfg(tmp_path, "rerun=true"))  # a new rerun of the new row starts over
    assert "resuming" not in caplog.text and again["steps"] == 12


@pytest.mark.parametrize("server", ["refused", "silent"])
def test_unreachable_online_wandb_falls_back_to_offline_and_the_row_is_written(tmp_path, monkeypatch, caplog, server):
    import socket as sk

    silent = sk.socket()  # "silent": accepts connections, never answers (a firewall that drops, a hung proxy)
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1] if server == "silent" else 9  # nothing listens on port 9
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "3")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    t0 = time.perf_counter()
    row = run_job(make_cfg(tmp_path, "logger=wandb", "wandb.mode=online"))
    assert row["status"] == "finished" and len(load_runs(tmp_path)) == 1
    lines = [r.getMessage() for r in caplog.records if "W&B unreachable" in r.getMessage()]
    assert len(lines) == 1 and "wandb sync" in lines[0]
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 1
    assert time.perf_counter() - t0 < 60
    silent.close()


def test_submitit_preemption_signal_is_saved_then_handed_to_submitit(tmp_path, monkeypatch):
    """Under submitit (hydra/launcher=slurm) USR2 warns of the time limit; the job saves at the step
    boundary, then submitit's own handler requeues it (here a stand-in that records the call)."""
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    handed = []

    def submitit_requeue(signum, frame):
        handed.append(signum)
        raise SystemExit(-1)  # what submitit does after `scontrol requeue`

    previous = signal.signal(signal.SIGUSR2, submitit_requeue)
    try:
        with pytest.raises(SystemExit) as stopped:
            run_job(make_cfg(tmp_path, "checkpoint_every=1000"), callbacks=[SignalAt(signal.SIGUSR2, 3)])
        assert handed == [signal.SIGUSR2] and stopped.value.code == -1
        assert saved_step(job_dir(tmp_path) / "last.ckpt") == 4, "saved before submitit requeued"
    finally:
        signal.signal(signal.SIGUSR2, previous)
