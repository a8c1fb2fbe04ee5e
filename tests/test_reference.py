"""The committed horizon reference (reference/horizons/, README): its horizons are bracketed for
several models on each task, and none moves by more than a factor 1.5 when any one seed is dropped."""
import functools
from pathlib import Path

import numpy as np
import pytest

from gapbench import report, results, stats

STORE = Path(__file__).resolve().parents[1] / "reference" / "horizons"
SWEEPS = {"adding": "reference_adding"}  # task -> the horizon sweep committed for it
MAX_MOVE = 1.5


@functools.lru_cache
def horizon_tables() -> tuple:
    runs = results.load_runs(STORE)
    out = []
    for task, sweep in SWEEPS.items():
        (rep,) = report.tables(runs[runs["sweep_id"] == sweep], task, n_boot=0)
        out.append((task, rep))
    return tuple(out)


@pytest.mark.parametrize("task", SWEEPS)
def test_reference_has_at_least_two_bracketed_models(task):
    rep = dict(horizon_tables())[task]
    crossed = rep.horizons[rep.horizons["kind"] == "crossed"]
    assert len(crossed) >= 2, rep.horizons[["row", "text"]].to_string()
    assert rep.runs.groupby("row")["seed"].nunique().min() >= 5, "at least 5 seeds per model"


MODELS = ["rnn", "gru", "gru_cho", "lstm", "lstm_peephole", "lstm_cifg", "tcn", "transformer", "mingru",
          "minlstm", "indrnn", "exprnn"]  # conf/experiment/reference_adding.yaml
# Measured on the committed rows: with 5 seeds these two do not meet the criterion (strict: an
# XPASS, e.g. after more seeds, fails the suite so that this list is kept true).
UNSTABLE = {"mingru": "dropping seed 2 moves the horizon from 67 to 32 (2.1x): seeds split between T < 20 and T >= 80",
            "minlstm": "dropping seed 0 leaves no crossing below 320 (>= 320 from 225)"}


@functools.lru_cache
def seed_moves(task: str, row: str) -> dict[int, float]:
    """Per seed: the factor by which dropping it moves the row's horizon (inf: it changes kind)."""
    rep = dict(horizon_tables())[task]
    g = rep.runs[rep.runs["row"] == row].dropna(subset=["solved"])
    full = stats.fit_horizon(g, n_boot=0)
    moves = {}
    for seed in sorted(g["seed"].unique()):
        part = stats.fit_horizon(g[g["seed"] != seed], n_boot=0)
        if full.kind == part.kind == "crossed":
            moves[int(seed)] = max(part.estimate / full.estimate, full.estimate / part.estimate)
        else:  # censored both ways (the bound is what is reported), or a change of kind
            moves[int(seed)] = 1.0 if full.kind == part.kind else np.inf
    return moves


@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.xfail(strict=True, reason=UNSTABLE[m]))
                                   if m in UNSTABLE else m for m in MODELS])
@pytest.mark.parametrize("task", SWEEPS)
def test_no_horizon_moves_more_than_a_factor_1_5_when_one_seed_is_dropped(task, model):
    moves = seed_moves(task, model)
    assert len(moves) >= 5
    worst = max(moves, key=moves.get)
    assert moves[worst] <= MAX_MOVE, f"dropping seed {worst} moves {model}'s horizon {moves[worst]:.2f}x"
