"""Promises of docs/reliability.md: bad input refused in one line, resume after SIGKILL, skip finished."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gapbench.preflight import check_command_line
from gapbench.results import load_runs

from conftest import ROOT

CONF = ROOT / "conf"

BAD_INPUT = [  # (command-line arguments, what the one line must say)
    (["cell=foo"], "unknown cell 'foo'; valid: gru, gru_cho, lstm, lstm_cifg, lstm_peephole, rnn"),
    (["task=bar"], "unknown task 'bar'; valid: adding, assoc_recall, copy"),
    (["logger=tensorboard"], "unknown logger 'tensorboard'; valid: csv, none, wandb"),
    (["hydra/launcher=ray"], "unknown launcher 'ray'; valid: basic, joblib"),
    (["gap=0"], "gap=0 is out of range; gap must be an integer >= 1"),
    (["gap=-5"], "gap=-5 is out of range"),
    (["gap=abc"], "gap='abc' is not an integer"),
    (["gap=2.5"], "gap=2.5 is not an integer"),
    (["task=adding", "gap=1"], "gap=1 is out of range; gap must be an integer >= 2"),
    (["gap=100000000"], "needs ~"),  # activations of backpropagation through time exceed RAM
    (["cell.hidden_size=0"], "cell.hidden_size=0 is out of range"),
    (["task.batch_size=-1"], "task.batch_size=-1 is out of range"),
    (["seed=-1"], "seed=-1 is out of range"),
    (["trainer.max_steps=0"], "trainer.max_steps=0 is out of range"),
    (["results_dir=/etc/hostname"], "results_dir=/etc/hostname is not a directory"),
    (["results_dir=/etc/hostname/sub"], "cannot be created"),
    (["results_dir="], "results_dir='' is not a path"),
    (["foo=1"], "unknown config key 'foo'"),
    (["cell=rnn", "+cell.forget_bias=1.0"], "cell 'rnn' has no option 'forget_bias'; its options: layers, dropout"),
    (["+task.colour=red"], "task copy has no option colour; its options: val_size, test_size"),
    (["cell.hiden_size=64"], "unknown config key 'cell.hiden_size'"),
    (["logger=wandb", "wandb.mode=online"], "wandb.mode=online needs W&B credentials"),
    (["wandb.mode=sometimes"], "unknown wandb.mode 'sometimes'; valid: offline, online, disabled"),
    (["probe.at=[2.0]"], "probe.at=[2.0] is invalid"),
    (["progress=0"], "progress=0 is out of range; progress must be an integer >= 1 (steps between progress-bar redraws), or false"),
    (["-m", "cell=lstm,gru", "gap=10,0"], "gap=0 is out of range"),
    (["-m", "seed=0,1", "trainer.strategy=ddp", "trainer.devices=2"], "trainer.strategy=ddp inside a local multirun"),
    (["-m", "experiment=cpu_copy", "cell.hidden_size=-3"], "cell.hidden_size=-3 is out of range"),
]


@pytest.mark.parametrize("args,expected", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_table(args, expected, monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    if not any(a.startswith("results_dir") for a in args):
        args = [*args, f"results_dir={tmp_path}/store"]
    problem = check_command_line(args, CONF)
    assert problem is not None and expected in problem, problem
    assert "\n" not in problem
    assert not (tmp_path / "store").exists()


def test_good_sweep_passes_preflight(tmp_path):
    assert check_command_line(["-m", "cell=lstm,gru,rnn", "gap=10,100", "task=adding", "hydra/launcher=joblib",
                               f"results_dir={tmp_path}"], CONF) is None


@pytest.mark.slow
def test_killed_job_resumes_with_one_row_and_full_step_count(tmp_path):
    args = [sys.executable, str(ROOT / "run.py"), f"results_dir={tmp_path}", "progress=false", "gap=20",
            "trainer.max_steps=1500", "trainer.max_time=null", "checkpoint_every=100", "task.test_size=128",
            "task.val_size=64", "trainer.val_check_interval=500"]
    env = {**os.environ, "WANDB_MODE": "offline"}
    job = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(tmp_path.glob("jobs/*/last.ckpt")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert list(tmp_path.glob("jobs/*/last.ckpt")), "a checkpoint was written before the kill"
    assert len(load_runs(tmp_path)) == 0, "killed before the end: no row yet"

    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming" in done.stderr + done.stdout
    df = load_runs(tmp_path)
    assert len(df) == 1 and df.steps[0] == 1500 and df.status[0] == "finished"
    run_dirs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 2 and len({d.name.rsplit("-", 1)[1] for d in run_dirs}) == 1, \
        "the resumed job continues the same W&B run id"


@pytest.mark.slow
def test_rerunning_a_finished_sweep_adds_no_row(cli, tmp_path):
    args = ["-m", "cell=lstm,gru", "gap=5,10", "trainer.max_steps=10", f"results_dir={tmp_path}", "progress=false",
            "logger=none", "task.test_size=64", "task.val_size=64"]
    assert cli(*args).returncode == 0
    first = load_runs(tmp_path)
    again = cli(*args)
    assert again.returncode == 0
    assert again.stderr.count("skip ") + again.stdout.count("skip ") == 4
    second = load_runs(tmp_path)
    assert len(first) == len(second) == 4
    assert sorted(first.finished_at) == sorted(second.finished_at)


@pytest.mark.slow
def test_no_secret_in_anything_written(tmp_path):
    secret = "gapbench-test-secret-0123456789abcdef0123"
    env = {**os.environ, "WANDB_API_KEY": secret, "WANDB_MODE": "offline"}
    r = subprocess.run([sys.executable, str(ROOT / "run.py"), f"results_dir={tmp_path}", "progress=false",
                        "gap=3", "trainer.max_steps=5", "task.test_size=32", "task.val_size=32"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert secret not in r.stdout + r.stderr
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files) and len(load_runs(tmp_path)) == 1
    for p in files:
        assert secret.encode() not in p.read_bytes(), f"secret written to {p}"
