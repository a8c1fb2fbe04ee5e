"""`python -m gapbench.results`: ls, show, export, compare on a store this test writes."""
import subprocess
import sys

import pandas as pd
import pytest

from gapbench import results
from gapbench.results.cli import main


def _row(task, cell, gap, seed, score, steps=100, sweep="s1", status="finished"):
    return {"run_id": f"{task}-{cell}-gap{gap}-s{seed}-{steps:08d}", "sweep_id": sweep, "task": task, "cell": cell,
            "gap": gap, "seed": seed, "status": status, "steps": steps, "wall_s": 1.5, "score_name": "recall_acc",
            "score": score, "higher_is_better": True, "test_loss": 0.1, "baseline": 0.125,
            "config_hash": f"{steps:012d}", "cfg.trainer.max_steps": steps, "cfg.gap": gap, "cfg.seed": seed}


@pytest.fixture
def store(tmp_path):
    for cell, base in [("lstm", 0.9), ("gru", 0.8)]:
        for gap in (10, 100):
            for seed in (0, 1):
                results.append_run(tmp_path, _row("copy", cell, gap, seed, base - gap / 1000 + seed / 100))
    results.append_run(tmp_path, _row("adding", "rnn", 10, 0, 0.05, status="diverged"))
    return tmp_path


def test_ls_filters(store, capsys):
    assert main(["ls", "--results", str(store), "--task", "copy", "--cell", "gru", "--gap", "100"]) == 0
    out = capsys.readouterr().out
    assert out.count("copy-gru-gap100") == 2 and "lstm" not in out and "gap10-" not in out
    assert main(["ls", "--results", str(store), "--status", "diverged"]) == 0
    out = capsys.readouterr().out
    assert "adding-rnn-gap10-s0" in out and "copy-" not in out
    assert main(["ls", "--results", str(store), "--where", "cfg.trainer.max_steps=100", "--sweep", "nope"]) == 0
    assert "no runs match" in capsys.readouterr().out


def test_show_by_prefix_and_unknown_run(store, capsys):
    assert main(["show", "copy-lstm-gap10-s1", "--results", str(store)]) == 0
    out = capsys.readouterr().out
    assert "score" in out and "0.9" in out and "copy-lstm-gap10-s1-00000100" in out
    assert main(["show", "nope", "--results", str(store)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no run 'nope'")


def test_export_csv_round_trips_the_filtered_rows(store, tmp_path, capsys):
    out = tmp_path / "copy.csv"
    assert main(["export", "--results", str(store), "--task", "copy", "--csv", str(out)]) == 0
    df = pd.read_csv(out)
    assert len(df) == 8 and set(df.task) == {"copy"}
    assert set(df.columns) >= {"run_id", "score", "cfg.trainer.max_steps"}
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        assert main(["export", "--results", str(store), "--parquet", str(tmp_path / "x.parquet")]) == 1
        assert "needs pyarrow" in capsys.readouterr().err
    else:
        assert main(["export", "--results", str(store), "--parquet", str(tmp_path / "x.parquet")]) == 0
        assert len(pd.read_parquet(tmp_path / "x.parquet")) == 9


def test_compare_pivots_one_condition_and_refuses_mixed_ones(store, capsys):
    assert main(["compare", "--results", str(store), "--task", "copy"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith(("lstm", "gru"))}
    assert "gap 10" in out and "gap 100" in out
    assert "0.895 (2)" in lines["lstm"] and "0.795 (2)" in lines["gru"]  # mean over seeds 0 and 1
    assert out.index("gru") < out.index("lstm"), "cells in registry order"
    results.append_run(store, _row("copy", "lstm", 10, 0, 0.99, steps=500))  # a second condition
    assert main(["compare", "--results", str(store), "--task", "copy"]) == 2
    assert "cfg.trainer.max_steps" in capsys.readouterr().err
    assert main(["compare", "--results", str(store), "--task", "copy", "--where", "cfg.trainer.max_steps=100"]) == 0


def test_module_entry_point_and_bad_store(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gapbench.results", "ls", "--results", str(tmp_path / "none")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().startswith("error: no results store")


def test_export_writes_a_store_mixing_types_in_one_column(tmp_path, capsys):
    """cfg.progress is false in one row and 10 in another, cfg.probe.at a list in one and missing in
    the other: Parquet takes one type per column, so such columns are written as text."""
    pytest.importorskip("pyarrow")
    results.append_run(tmp_path, {**_row("copy", "lstm", 10, 0, 0.9), "cfg.progress": False, "cfg.probe.at": [0.0, 1.0]})
    results.append_run(tmp_path, {**_row("copy", "lstm", 10, 1, 0.8), "cfg.progress": 10})
    out = tmp_path / "x.parquet"
    assert main(["export", "--results", str(tmp_path), "--parquet", str(out), "--csv", str(tmp_path / "x.csv")]) == 0
    assert "mixed types written as text: cfg.progress" in capsys.readouterr().err
    df = pd.read_parquet(out).sort_values("seed")
    assert list(df["cfg.progress"]) == ["false", "10"] and df["cfg.probe.at"].iloc[0] == "[0.0, 1.0]"
    assert df["cfg.probe.at"].isna().iloc[1] and list(df["score"]) == [0.9, 0.8]  # one-type columns keep their type
    assert len(pd.read_csv(tmp_path / "x.csv")) == 2
