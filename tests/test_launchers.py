"""Sweeps through Hydra's joblib (local parallel) and submitit (SLURM; here its local executor) launchers."""
import os

import pytest

from gapbench.results import load_runs

pytestmark = pytest.mark.slow

TINY = ["trainer.max_steps=5", "progress=false", "task.test_size=32", "task.val_size=32", "gap=4"]


def test_joblib_runs_jobs_in_parallel_processes_with_split_threads(cli, tmp_path):
    r = cli("-m", "cell=lstm,gru", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"results_dir={tmp_path}", *TINY)
    assert r.returncode == 0, r.stderr[-3000:]
    df = load_runs(tmp_path)
    assert sorted(df.cell) == ["gru", "lstm"] and (df.status == "finished").all()
    cores = len(os.sched_getaffinity(0))
    assert (df.threads == max(1, cores // 2)).all(), "torch threads = cores / parallel jobs"
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 2
    assert "job 1/2" in r.stdout and "job 2/2" in r.stdout and "sweep done: 2/2 jobs" in r.stdout, r.stdout


def test_submitit_local_launcher(cli, tmp_path):
    r = cli("-m", "cell=rnn", "seed=0,1", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5",
            f"results_dir={tmp_path}", "logger=none", *TINY)
    assert r.returncode == 0, r.stderr[-3000:]
    df = load_runs(tmp_path)
    assert sorted(df.seed) == [0, 1] and (df.status == "finished").all()
    assert list(tmp_path.glob("hydra/multirun/*/.submitit")), "jobs went through submitit"
