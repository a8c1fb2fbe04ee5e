"""run.py end to end, as a user types it."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from gapbench.results import load_runs

pytestmark = pytest.mark.slow


def test_multirun_leaves_one_row_and_one_wandb_run_per_job(cli, tmp_path):
    r = cli("-m", "cell=lstm,gru", "gap=10,100", "trainer.max_steps=20", f"results_dir={tmp_path}",
            "progress=false", "task.test_size=256", "task.val_size=64")
    assert r.returncode == 0, r.stderr[-3000:]
    df = load_runs(tmp_path)
    assert len(df) == 4
    assert sorted(zip(df.cell, df.gap)) == [("gru", 10), ("gru", 100), ("lstm", 10), ("lstm", 100)]
    assert (df.status == "finished").all() and (df.steps == 20).all()
    assert df.sweep_id.nunique() == 1 and df.run_id.is_unique
    assert df.score.notna().all() and (df.score_name == "recall_acc").all()
    assert (df.baseline == 1 / 8).all()
    assert set(df["cfg.trainer.max_steps"]) == {20}
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 4, "each job is its own W&B run"
    assert all(list(run.glob("*.wandb")) for run in runs)
    # quiet: per job one progress, one start and one end line; then the sweep's table
    out = (r.stdout + r.stderr).splitlines()
    assert [line for line in out if "] - job " in line][-1].split(" - ")[1].startswith("job 4/4  cell=gru gap=100")
    assert sum(" - start " in line for line in out) == 4 and sum(" - end " in line for line in out) == 4
    assert any("sweep done: 4/4 jobs" in line for line in out)
    table = out[next(i for i, line in enumerate(out) if "sweep done" in line) + 1:]
    assert table[0].split()[:4] == ["job", "task", "cell", "gap"] and len(table) >= 6
    assert len(out) <= 3 * 4 + 2 + len(table), "\n".join(out)
    assert not [line for line in out if line.startswith("wandb:") or "Warning" in line or "GPU available" in line]


@pytest.mark.parametrize("arg,expected", [
    ("cell=foo", "unknown cell 'foo'; valid: "),
    ("task=bar", "unknown task 'bar'; valid: adding"),
    ("gap=0", "gap=0 is out of range; gap must be an integer >= 1"),
    ("gap=-5", "gap=-5 is out of range"),
    ("gap=abc", "gap='abc' is not an integer"),
])
def test_bad_input_one_line_nonzero_exit_nothing_written(cli, tmp_path, arg, expected):
    r = cli(arg, f"results_dir={tmp_path}/store")
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert expected in lines[0] and lines[0].startswith("error: ")
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "store").exists(), "bad input writes nothing"


def test_bad_value_inside_a_sweep_stops_before_any_job(cli, tmp_path):
    r = cli("-m", "cell=lstm,foo", "gap=10", "trainer.max_steps=5", f"results_dir={tmp_path}")
    assert r.returncode != 0 and "unknown cell 'foo'" in r.stderr
    assert len(load_runs(tmp_path)) == 0


def test_help_lists_the_choices(cli):
    r = cli("--help")
    assert r.returncode == 0
    for word in ("cell=", "lstm_peephole", "gru_cho", "task=", "copy", "adding", "-m cell=lstm,gru gap=10,100"):
        assert word in r.stdout


def test_results_dir_under_the_home_folder(tmp_path):
    """`results_dir=~/x`, as a quoted argument or a shell that does not expand it: under $HOME, no folder `~`."""
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, str(ROOT / "run.py"), "results_dir=~/store", "logger=none", "progress=false",
                           "trainer.max_steps=2", "probe.at=[]", "cell.hidden_size=8", "task.val_size=32",
                           "task.test_size=32", "threads=1"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(load_runs(tmp_path / "home" / "store")) == 1
    assert not (tmp_path / "~").exists()
