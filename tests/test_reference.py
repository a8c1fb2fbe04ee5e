"""The committed horizon reference (reference/horizons/, README): its horizons are bracketed for
several models on each task, and none moves by more than a factor 1.5 when any one seed is dropped."""
import functools
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from gapbench import report, results
from gapbench.analysis import seed_stability

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "reference" / "horizons"
SWEEPS = {"adding": "reference_adding", "copy": "reference_copy"}  # task -> its committed horizon sweep
MAX_MOVE = seed_stability.MAX_MOVE


@functools.lru_cache
def horizon_tables() -> tuple:
    runs = results.load_runs(STORE)
    out = []
    for task, sweep in SWEEPS.items():
        (rep,) = report.tables(runs[runs["sweep_id"] == sweep], task, n_boot=0)
        out.append((task, rep))
    return tuple(out)


# Measured on the committed rows: tasks with fewer than two bracketed models (strict: kept true).
FEW_BRACKETED = {"copy": "since issue 27 expRNN (its orthogonal parameter at a tenth of the rate, as its authors "
                         "train it) solves T = 320, the top of the searched range, in 4 of 5 seeds: >= 320 "
                         "[239, >= 320], and only the TCN is bracketed; needs a larger hydra.sweeper.max_gap"}


@pytest.mark.parametrize("task", [pytest.param(t, marks=pytest.mark.xfail(strict=True, reason=FEW_BRACKETED[t]))
                                  if t in FEW_BRACKETED else t for t in SWEEPS])
def test_reference_has_at_least_two_bracketed_models(task):
    rep = dict(horizon_tables())[task]
    crossed = rep.horizons[rep.horizons["kind"] == "crossed"]
    assert len(crossed) >= 2, rep.horizons[["row", "text"]].to_string()
    assert rep.runs.groupby("row")["seed"].nunique().min() >= 5, "at least 5 seeds per model"


def models(sweep: str) -> list[str]:
    """The models the sweep's experiment config searches (conf/experiment/<sweep>.yaml)."""
    cfg = OmegaConf.load(ROOT / "conf" / "experiment" / f"{sweep}.yaml")
    return str(cfg.hydra.sweeper.params.cell).split(",")


# Measured on the committed rows: models that do not meet the criterion (strict: an XPASS fails the
# suite, so that this list is kept true). Empty since the adding reference runs 200 steps: at 400
# minGRU moved 1.54x with 10 seeds (reference/horizons_budget_probe/README.md).
UNSTABLE: dict[tuple[str, str], str] = {}


@functools.lru_cache
def seed_moves(task: str, row: str) -> dict[int, float]:
    """Per seed: the factor by which dropping it moves the row's horizon (inf: it changes kind)."""
    rep = dict(horizon_tables())[task]
    return seed_stability.seed_drop_moves(rep.runs[rep.runs["row"] == row].dropna(subset=["solved"]))


@pytest.mark.parametrize("task, model", [
    pytest.param(t, m, marks=pytest.mark.xfail(strict=True, reason=UNSTABLE[t, m])) if (t, m) in UNSTABLE else (t, m)
    for t, sweep in SWEEPS.items() for m in models(sweep)])
def test_no_horizon_moves_more_than_a_factor_1_5_when_one_seed_is_dropped(task, model):
    moves = seed_moves(task, model)
    assert len(moves) >= 5
    worst = max(moves, key=moves.get)
    assert moves[worst] <= MAX_MOVE, f"dropping seed {worst} moves {model}'s horizon {moves[worst]:.2f}x"
