"""gapbench.analysis.seed_stability: the seed-drop test and its simulation with more seeds."""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gapbench.analysis import seed_stability as ss
from gapbench.analysis import stats

STORE = str(Path(__file__).resolve().parents[1] / "reference" / "horizons")
SEARCH = {"start": 20, "min_gap": 2, "max_gap": 320, "factor": 1.5, "grow": 2.0}


def searched(horizons):
    rows = [(seed, gap, ok) for seed, h in enumerate(horizons) for gap, ok in ss.simulate_search(h, **SEARCH)]
    return pd.DataFrame(rows, columns=["seed", "gap", "solved"])


def test_the_docstrings_worked_example():
    df = searched([12, 24, 34, 95, 130])
    brackets = [ss.seed_interval(g, 2, 320) for _, g in df.groupby("seed")]
    assert brackets == [(10, 14), (20, 28), (28, 40), (80, 113), (113, 160)]
    assert round(stats.fit_horizon(df, n_boot=0).estimate) == 67
    moves = ss.seed_drop_moves(df)
    assert max(moves, key=moves.get) == 4 and round(moves[4], 2) == 2.09
    assert round(stats.fit_horizon(df[df["seed"] != 4], n_boot=0).estimate) == 32


def test_seed_drop_moves_match_refitting_without_the_seed():
    df = searched([12, 24, 34, 95, 130, 40, 50])
    full = stats.fit_horizon(df, n_boot=0).estimate
    for seed, move in ss.seed_drop_moves(df).items():
        part = stats.fit_horizon(df[df["seed"] != seed], n_boot=0).estimate
        assert move == pytest.approx(max(part / full, full / part))


def test_censored_models_do_not_move_and_a_change_of_kind_is_infinite():
    assert set(ss.seed_drop_moves(searched([math.inf] * 5)).values()) == {1.0}
    assert set(ss.seed_drop_moves(searched([0.0] * 5)).values()) == {1.0}
    moves = ss.seed_drop_moves(searched([math.inf, 30.0, 30.0]))  # crossed with 3, above without a 30
    assert math.inf in moves.values()


def test_seed_interval_reads_censored_and_noisy_seeds():
    assert ss.seed_interval(pd.DataFrame({"gap": [20, 40, 80, 160, 320], "solved": [True] * 5}), 2, 320) == (320, math.inf)
    assert ss.seed_interval(pd.DataFrame({"gap": [20, 10, 5, 2], "solved": [False] * 4}), 2, 320) == (0, 2)
    # a failure below a solved gap: the bracket ends at the smallest failure
    assert ss.seed_interval(pd.DataFrame({"gap": [20, 40, 28], "solved": [True, True, False]}), 2, 320) == (20, 28)


def test_draw_horizon_stays_in_its_bracket():
    rng = np.random.default_rng(0)
    draws = [ss.draw_horizon((28, 40), 320, rng) for _ in range(200)]
    assert all(28 <= h < 40 for h in draws)
    assert ss.draw_horizon((320, math.inf), 320, rng) == math.inf
    assert ss.draw_horizon((0, 1), 320, rng) == 0.0


def test_agreeing_seeds_always_pass_and_disagreeing_ones_pass_more_often_with_more_seeds():
    rng = np.random.default_rng(0)
    assert ss.pass_rate([(28, 40)] * 5, 5, SEARCH, 20, rng) == 1.0
    spread = [(10, 14), (20, 28), (28, 40), (80, 113), (113, 160)]
    few, many = ss.pass_rate(spread, 5, SEARCH, 60, rng), ss.pass_rate(spread, 30, SEARCH, 60, rng)
    assert few < 1.0 and many > few


def test_cli_prints_the_table_and_refuses_bad_input(capsys, tmp_path):
    assert ss.main(["--results", STORE, "--sweep", "reference_copy", "--seeds", "5", "--draws", "2"]) == 0
    out = capsys.readouterr().out
    assert "| transformer" in out and "P(pass), 5 seeds" in out and "every model passes" in out
    assert ss.main(["--results", str(tmp_path), "--sweep", "reference_copy"]) == 2
    assert ss.main(["--results", STORE, "--sweep", "reference_copy", "--seeds", "1"]) == 2
    err = capsys.readouterr().err
    assert "no runs of sweep" in err and "--seeds" in err
    assert not any(tmp_path.iterdir())
