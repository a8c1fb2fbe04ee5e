"""Learning rates selected on validation (gapbench.analysis.lr_selection) and used by the horizon sweeper."""
import json
import subprocess
import sys

import pandas as pd
import pytest
from test_horizon import TINY, load_run_py, multirun, solved_below_7

from gapbench.analysis import lr_selection
from gapbench.train.stopping import StopWhenSolved


def rows(sweep="pilot"):
    """lstm: best mean val at lr 0.003 (seed mean, then gap mean); rnn: best at the grid's edge."""
    out = []
    for cell, vals in {"lstm": {0.001: [0.5, 0.3, 0.4, 0.2], 0.003: [0.1, 0.3, 0.2, 0.2], 0.01: [0.9, 0.9, 0.9, 0.9]},
                       "rnn": {0.001: [0.1, 0.1, 0.1, 0.1], 0.003: [0.2, 0.2, 0.2, 0.2], 0.01: [0.3, 0.3, 0.3, 0.3]}}.items():
        for lr, v in vals.items():
            for (gap, seed), val in zip([(10, 0), (10, 1), (20, 0), (20, 1)], v):
                out.append({"sweep_id": sweep, "status": "finished", "task": "adding", "cell": cell, "gap": gap,
                            "seed": seed, "cfg.optim.lr": lr, "val_score": val, "higher_is_better": False,
                            "score_name": "mse", "cfg.trainer.max_steps": 100})
    return pd.DataFrame(out)


def test_selects_the_best_mean_validation_score_and_flags_the_grid_edge():
    sel = lr_selection.select(rows(), "pilot")
    assert sel["cells"]["lstm"]["selected"] == 0.003 and not sel["cells"]["lstm"]["at_edge"]
    assert sel["cells"]["lstm"]["val"]["0.001"] == pytest.approx(0.35)  # mean over gaps of seed means
    assert sel["cells"]["rnn"]["selected"] == 0.001 and sel["cells"]["rnn"]["at_edge"]
    assert sel["grid"] == [0.001, 0.003, 0.01] and sel["cells"]["lstm"]["n"]["0.003"] == 4
    higher = rows().assign(higher_is_better=True)
    assert lr_selection.select(higher, "pilot")["cells"]["lstm"]["selected"] == 0.01


def test_a_tie_on_the_score_is_broken_by_the_lower_validation_loss():
    """Copy memory: the TCN reaches recall 1.0 at every rate; the validation loss still tells them apart."""
    tied = rows().assign(higher_is_better=True, val_score=1.0)
    tied["val/loss"] = tied["cfg.optim.lr"].map({0.001: 0.02, 0.003: 0.001, 0.01: 0.005})
    sel = lr_selection.select(tied, "pilot")["cells"]["lstm"]
    assert sel["selected"] == 0.003 and sel["tie_broken_by_val_loss"]
    untied = lr_selection.select(rows().assign(higher_is_better=True), "pilot")["cells"]["lstm"]
    assert not untied["tie_broken_by_val_loss"]
    assert "tie on the score" in lr_selection.table(lr_selection.select(tied, "pilot"))


def test_unknown_sweep_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "runs").mkdir()
    p = subprocess.run([sys.executable, "-m", "gapbench.analysis.lr_selection", "--results", str(tmp_path),
                        "--sweep", "nope", "--out", str(tmp_path / "sel.json")], capture_output=True, text=True)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "nope" in p.stderr
    assert not (tmp_path / "sel.json").exists()


def test_the_command_writes_the_selection_and_its_table(tmp_path):
    from gapbench import results

    for i, row in rows().iterrows():
        results.append_run(tmp_path, {**row.to_dict(), "run_id": f"r{i}"})
    p = subprocess.run([sys.executable, "-m", "gapbench.analysis.lr_selection", "--results", str(tmp_path),
                        "--sweep", "pilot", "--out", str(tmp_path / "sel.json")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert lr_selection.read(tmp_path / "sel.json")["cells"]["lstm"]["selected"] == 0.003
    assert "| lstm |" in (tmp_path / "sel.md").read_text() and "grid edge" in p.stdout


def write_selection(path, cells):
    sel = lr_selection.select(rows(), "pilot")
    sel["cells"] = {c: {**sel["cells"]["lstm"], "selected": lr} for c, lr in cells.items()}
    path.write_text(json.dumps(sel))


def test_the_horizon_sweeper_runs_each_cell_at_its_selected_rate(tmp_path, monkeypatch):
    monkeypatch.setattr(StopWhenSolved, "on_validation_end", solved_below_7)
    write_selection(tmp_path / "sel.json", {"rnn": 0.002, "gru": 0.004})
    multirun(monkeypatch, load_run_py(), "task=adding", "cell=rnn,gru", "gap=6", "cell.hidden_size=4",
             "trainer.max_steps=10", "trainer.val_check_interval=10", "hydra.sweeper.factor=2",
             f"hydra.sweeper.lr_from={tmp_path / 'sel.json'}", f"results_dir={tmp_path}", *TINY)
    lrs = {(r["cell"], r["cfg.optim.lr"]) for r in (json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*.json"))}
    assert lrs == {("rnn", 0.002), ("gru", 0.004)}


@pytest.mark.parametrize("extra, words", [([], "no rate for cell gru"),
                                          (["optim.lr=0.1"], "give one of them")])
def test_the_horizon_sweeper_refuses_a_selection_that_does_not_fit(tmp_path, monkeypatch, capsys, extra, words):
    write_selection(tmp_path / "sel.json", {"rnn": 0.002})
    with pytest.raises(SystemExit) as e:
        multirun(monkeypatch, load_run_py(), "task=adding", "cell=rnn,gru", "gap=6",
                 f"hydra.sweeper.lr_from={tmp_path / 'sel.json'}", f"results_dir={tmp_path}", *TINY, *extra)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and words in err
    assert not (tmp_path / "runs").exists()
