"""A model and a task from the user's own package, used without editing gapbench (docs/extending.md):
`cell=custom cell.target=mypkg.cells.JANET task=custom task.target=mypkg.tasks.FirstBit`.

The package is tests/outside/mypkg, copied to a fresh folder that only sys.path (or PYTHONPATH) knows.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from gapbench import cells, report, tasks
from gapbench.config import CONF
from gapbench.config.validate import ConfigError, check_config
from gapbench.results import load_runs

ROOT = Path(__file__).resolve().parents[1]
# an option that custom.yaml does not list is added with `+` (Hydra's syntax for a new key)
OUTSIDE = ["cell=custom", "cell.target=mypkg.cells.JANET", "task=custom", "task.target=mypkg.tasks.FirstBit",
           "+task.val_size=32", "+task.test_size=64", "+task.eval_batch_size=32"]


@pytest.fixture
def mypkg(tmp_path, monkeypatch):
    folder = tmp_path / "mine"
    shutil.copytree(Path(__file__).parent / "outside", folder)
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    for name in [m for m in sys.modules if m == "mypkg" or m.startswith("mypkg.")]:
        del sys.modules[name]


def make_cfg(results_dir, *overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=[
            f"results_dir={results_dir}", "logger=none", "progress=false", "threads=1", "probe.at=[]",
            "gap=4", "cell.hidden_size=8", "trainer.max_steps=5", *overrides])


@pytest.mark.slow
def test_outside_model_and_task_are_checked_trained_and_titled(mypkg, tmp_path):
    from gapbench.train.job import run_job

    cfg = make_cfg(tmp_path / "store", *OUTSIDE, "+cell.beta=2.0")
    check_config(cfg)  # the same checks as a registered model and task
    row = run_job(cfg)
    assert row["status"] == "finished" and row["steps"] == 5
    assert (row["cell"], row["task"]) == ("mypkg.cells.JANET", "mypkg.tasks.FirstBit")
    assert row["baseline"] == 0.5 and 0 <= row["score"] <= 1
    assert cells.title("mypkg.cells.JANET") == "JANET" and cells.options_help("mypkg.cells.JANET").endswith(
        "beta (a number, default 1.0)")
    runs = load_runs(tmp_path / "store")
    written = {Path(p).name: Path(p) for p in report.write_report(runs, tmp_path / "report")}
    assert "**First bit** (`mypkg.tasks.FirstBit`)" in written["index.md"].read_text()
    table = written["mypkg.tasks.FirstBit.md"].read_text()
    assert "| JANET " in table and "mypkg.cells" not in table, table


def test_outside_model_follows_the_contract(mypkg):
    """What tests/test_contract.py checks of every registered model, for the outside one."""
    torch.manual_seed(0)
    model = cells.build("mypkg.cells.JANET", 3, 4).double()
    x = torch.randn(2, 7, 3, dtype=torch.float64)
    out, final = model(x)
    assert out.shape == (2, 7, 4)
    state, hs = model.initial_state(2, dtype=torch.float64), []
    for x_t in x.unbind(1):
        h, state = model.step(x_t, state)
        hs.append(h)
    torch.testing.assert_close(torch.stack(hs, 1), out)
    assert tasks.task_class("mypkg.tasks.FirstBit").title == "First bit"


@pytest.mark.parametrize("overrides,message", [
    (["cell=custom"], "cell=custom needs cell.target=package.module.Class"),
    (["cell=custom", "cell.target=mypkg.cells.Nope"], "cell.target=mypkg.cells.Nope: module mypkg.cells has no Nope"),
    (["cell=custom", "cell.target=notapkg.cells.JANET"], "cannot import notapkg.cells (No module named 'notapkg')"),
    (["cell=custom", "cell.target=mypkg.tasks.FirstBit"], "is not a subclass of gapbench.cells.base.SequenceModel"),
    (["cell=custom", "cell.target=mypkg.cells.JANET", "+cell.beta=high"], "cell.beta='high' is invalid"),
    (["cell=custom", "cell.target=mypkg.cells.JANET", "+cell.gamma=1"], "has no option 'gamma'; its options: beta"),
    (["task=custom"], "task=custom needs task.target=package.module.Class"),
    (["task=custom", "task.target=mypkg.cells.JANET"], "is not a subclass of gapbench.tasks.base.Task"),
    (["task=custom", "task.target=mypkg.tasks.FirstBit", "+task.size=3"], "has no option size"),
])
def test_outside_mistakes_get_one_line(mypkg, tmp_path, overrides, message):
    with pytest.raises((ConfigError, tasks.TaskError)) as e:
        check_config(make_cfg(tmp_path, *overrides))
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.slow
def test_the_command_line_refuses_a_missing_outside_class_before_any_job(mypkg, tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "run.py"), "cell=custom", "cell.target=mypkg.cells.JAN",
                           f"results_dir={tmp_path / 'store'}"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(mypkg), os.environ.get("PYTHONPATH", "")])}, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == ["error: cell.target=mypkg.cells.JAN: module mypkg.cells has no JAN"]
    assert not (tmp_path / "store").exists()
