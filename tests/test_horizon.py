"""Memory horizons that cost little: stop_when_solved, the horizon search, and hydra/sweeper=horizon."""
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from gapbench.sweep.horizon_search import HorizonSearch
from gapbench.config.identity import config_hash
from gapbench.train.job import run_job
from gapbench.train.stopping import StopWhenSolved
from gapbench.config.validate import ConfigError, check_config

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
TINY = ["logger=none", "progress=false", "threads=1", "probe.at=[]", "task.val_size=64", "task.test_size=128"]


def make_cfg(tmp_path, *overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=[f"results_dir={tmp_path}", *TINY, *overrides])


# -- the search itself: a pure state machine ------------------------------------------------------
def drive(search: HorizonSearch, horizon: float) -> list[int]:
    tried = []
    while (gap := search.next_gap()) is not None:
        assert gap not in tried and isinstance(gap, int)
        tried.append(gap)
        search.record(gap, gap <= horizon)
    return tried


@pytest.mark.parametrize("start", [1, 3, 10, 40, 500])
@pytest.mark.parametrize("horizon", [2.5, 7, 33, 120, 700])
def test_search_brackets_every_horizon_within_the_factor(start, horizon):
    search = HorizonSearch(start, min_gap=1, max_gap=2000, factor=1.5)
    tried = drive(search, horizon)
    assert search.kind == "bracketed" and search.lo <= horizon < search.hi
    assert search.hi / search.lo <= 1.5 or search.hi - search.lo == 1
    grid = math.ceil(math.log(2000) / math.log(1.5)) + 1  # the log grid of the same resolution over [1, 2000]
    assert len(tried) <= 12 < grid


def test_search_ends_above_max_gap_and_below_min_gap():
    above = HorizonSearch(10, min_gap=2, max_gap=50)
    assert drive(above, 1e9) == [10, 20, 40, 50] and above.kind == "above" and above.text() == ">= 50"
    below = HorizonSearch(10, min_gap=2, max_gap=50)
    assert drive(below, 0) == [10, 5, 2] and below.kind == "below" and below.text() == "< 2"


# -- stop_when_solved ---------------------------------------------------------------------------
def test_stop_when_solved_stops_before_the_budget_and_records_the_step(tmp_path):
    # adding at gap 2 (both marks adjacent) is solved within ~100 steps by a small RNN
    args = ("task=adding", "gap=2", "cell=rnn", "cell.hidden_size=32", "trainer.val_check_interval=25")
    row = run_job(make_cfg(tmp_path, *args, "trainer.max_steps=1000", "stop_when_solved=true"))
    assert row["stopped_by"] == "solved" and row["steps"] == row["solved_at_step"] < 1000
    assert row["status"] == "finished" and math.isfinite(row["score"])
    budget = run_job(make_cfg(tmp_path, *args, f"trainer.max_steps={row['steps'] + 25}"))
    assert budget["stopped_by"] == "max_steps" and budget["solved_at_step"] == row["solved_at_step"], \
        "recorded without stopping too: same seed, same first solved validation"


def test_stop_when_solved_false_keeps_earlier_run_ids(tmp_path):
    config = OmegaConf.to_container(make_cfg(tmp_path), resolve=True)
    assert config["stop_when_solved"] is False
    old = {k: v for k, v in config.items() if k != "stop_when_solved"}
    assert config_hash(config) == config_hash(old)
    assert config_hash({**config, "stop_when_solved": True}) != config_hash(old)


def test_stop_when_solved_needs_a_task_with_a_criterion(tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"results_dir={tmp_path}", "task=lm_char", "stop_when_solved=true"])
    with pytest.raises(ConfigError, match="stop_when_solved"):
        check_config(cfg)


# -- the sweeper, in-process through run.py's Hydra entry point -----------------------------------
def load_run_py():
    spec = importlib.util.spec_from_file_location("gapbench_run_py", ROOT / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def multirun(monkeypatch, run_py, *args):
    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["run.py", "-m", "hydra/sweeper=horizon", *args])
    try:
        run_py.main()
    finally:
        GlobalHydra.instance().clear()


def solved_below_7(self, trainer, pl_module):
    """A stub criterion: solved at the first validation wherever gap <= 6 (horizon 6)."""
    if self.solved_at is None and self.task.gap <= 6:
        self.solved_at = int(trainer.global_step)
        if self.stop:
            trainer.should_stop = self.stopped = True


def test_horizon_sweeper_brackets_and_a_killed_search_resumes_without_retraining(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(StopWhenSolved, "on_validation_end", solved_below_7)
    run_py = load_run_py()
    import gapbench.train.job

    real, calls = gapbench.train.job.run_job, []  # run.py's main imports it at call time

    def killed_at_the_fourth_job(cfg):
        calls.append(int(cfg.gap))
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(cfg)

    args = ["task=adding", "cell=rnn,gru", "gap=4", "cell.hidden_size=4", "trainer.max_steps=20",
            "trainer.val_check_interval=10", "sweep_id=hz", f"results_dir={tmp_path}", *TINY]
    monkeypatch.setattr(gapbench.train.job, "run_job", killed_at_the_fourth_job)
    with pytest.raises(KeyboardInterrupt):
        multirun(monkeypatch, run_py, *args)
    runs = tmp_path / "runs"
    first = {p.name: json.loads(p.read_text())["finished_at"] for p in runs.glob("*.json")}
    assert len(first) == 3  # round 1 (gap 4, both cells) and the first job of round 2

    monkeypatch.setattr(gapbench.train.job, "run_job", real)
    multirun(monkeypatch, run_py, *args)
    out = capsys.readouterr().out
    assert "cell=rnn: gap 8 failed -> bracket [4, 8), next gap 6" in out
    rows = {p.name: json.loads(p.read_text()) for p in runs.glob("*.json")}
    assert len(rows) == 6 and not (runs / "replaced").exists(), "one row per job, none trained twice"
    assert all(rows[name]["finished_at"] == t for name, t in first.items()), "finished jobs were skipped"
    assert sorted(r["gap"] for r in rows.values()) == [4, 4, 6, 6, 8, 8]
    assert all(r["cfg.stop_when_solved"] is True for r in rows.values())
    horizons = json.loads((tmp_path / "horizons" / "hz.json").read_text())
    assert [(s["cell"], s["bracket"], s["kind"]) for s in horizons["searches"]] == [
        ("rnn", "[6, 8)", "bracketed"), ("gru", "[6, 8)", "bracketed")]

    # the sweep extended (a cell added): its file keeps the earlier searches; gru's is redone from its rows
    multirun(monkeypatch, run_py, *["cell=lstm,gru" if a.startswith("cell=") else a for a in args])
    assert "keeping 1 search(es) of an earlier run of sweep hz" in capsys.readouterr().out
    horizons = json.loads((tmp_path / "horizons" / "hz.json").read_text())
    assert [(s["cell"], s["bracket"]) for s in horizons["searches"]] == [
        ("rnn", "[6, 8)"), ("lstm", "[6, 8)"), ("gru", "[6, 8)")]
    assert len(list(runs.glob("*.json"))) == 9, "gru's finished jobs were read back, lstm's three trained"


def test_horizon_sweeper_refuses_a_task_without_a_continuous_gap(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        multirun(monkeypatch, load_run_py(), "task=translation", "gap=10", f"results_dir={tmp_path}", *TINY)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and "continuous gap" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "horizons").exists()


def test_the_comparison_grid_has_the_search_resolution():
    from gapbench.analysis.horizon_cost import grid_gaps

    gaps = grid_gaps(1, 2000, 1.5)
    assert gaps[0] == 1 and gaps[-2] < 2000 <= gaps[-1]
    assert all(1 < b / a <= 1.5 or b - a == 1 for a, b in zip(gaps, gaps[1:]))


def test_a_horizon_sweep_has_one_id_and_a_later_sweep_includes_the_jobs_it_reused(tmp_path, monkeypatch, capsys):
    """Rows, the horizons file and every tool's --sweep share the default sweep id; a second search
    that reuses the first one's finished jobs lists them under its own id (results.of_sweeps)."""
    from gapbench import results
    from gapbench.analysis import horizon_cost, seed_stability

    monkeypatch.setattr(StopWhenSolved, "on_validation_end", solved_below_7)
    run_py = load_run_py()
    args = ["task=adding", "cell=rnn", "gap=4", "cell.hidden_size=4", "trainer.max_steps=20",
            "trainer.val_check_interval=10", f"results_dir={tmp_path}", *TINY]
    multirun(monkeypatch, run_py, *args, "seed=0,1", f"hydra.sweep.dir={tmp_path}/hydra/first")
    (first,) = [p.stem for p in (tmp_path / "horizons").glob("*.json")]
    assert first == "seed_first"
    assert set(results.load_runs(tmp_path)["sweep_id"]) == {first}
    assert horizon_cost.main(["--results-dir", str(tmp_path), "--sweep", first]) == 0
    assert seed_stability.main(["--results", str(tmp_path), "--sweep", first, "--seeds", "2", "--draws", "2"]) == 0
    assert f"sweep {first}: search from gap 4" in capsys.readouterr().out

    multirun(monkeypatch, run_py, *args, "seed=0,1,2", f"hydra.sweep.dir={tmp_path}/hydra/second")
    rows = results.of_sweeps(results.load_runs(tmp_path), tmp_path, ["seed_second"])
    assert len(rows) == 9 and set(rows["sweep_id"]) == {"seed_second"}
    assert sorted(rows.groupby("seed")["reused_from"].first().fillna("").tolist()) == ["", first, first]
    assert len(results.load_runs(tmp_path)) == 9, "seeds 0 and 1 were not trained again"
