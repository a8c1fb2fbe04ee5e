"""How many seeds a horizon needs: the seed-drop test on a sweep's rows, and a simulation of the same
protocol with more seeds.

The seed-drop test: a horizon (stats.fit_horizon over all seeds) is stable when dropping any one seed
moves it by at most a factor 1.5. A model whose seeds disagree fails it at a small seed count; more
seeds make it pass, at a price. This module says both, from the rows a horizon search wrote:

* **observed**: per model, the worst factor by which dropping one of its seeds moves its horizon;
* **simulated**: the probability that the test passes with n seeds. Each simulated seed takes a
  measured seed's bracket at random (a smoothed bootstrap over seeds) and a horizon drawn
  log-uniformly inside it; the search is then replayed with the sweep's own settings (start gap,
  growth, factor, gap range) on outcomes "solved iff gap <= horizon", and the fit and the test are
  run on the simulated rows. A seed that solved the largest gap keeps solving it (censored), one
  that failed the smallest keeps failing. Real outcomes near a seed's horizon are noisier than this
  step, so the simulated pass rates are, if anything, optimistic.
* **cost**: per model, the measured job time per seed in the sweep, so that the seed count a
  stability target needs can be priced before it runs.

    python -m gapbench.analysis.seed_stability --results reference/horizons --sweep reference_adding
    python -m gapbench.analysis.seed_stability --results reference/horizons --sweep reference_copy --seeds 5,10,20

Worked example (tests/test_seed_stability.py runs it): five seeds with horizons 12, 24, 34, 95 and
130, searched from gap 20 (grow 2, factor 1.5, gaps 2 to 320), end in the brackets [10, 14),
[20, 28), [28, 40), [80, 113) and [113, 160). The fit over all five crosses 0.5 at gap 67; without
the seed at 130 it crosses at 32, a factor 2.09, so this model fails the test with 5 seeds.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from gapbench.analysis import stats
from gapbench.sweep.horizon_search import HorizonSearch

MAX_MOVE = 1.5  # the reference's stability criterion (issue 11)


def seed_drop_moves(rows: pd.DataFrame) -> dict[int, float]:
    """Per seed of one model's (seed, gap, solved) rows: the factor by which dropping that seed moves
    the fitted horizon (stats.fit_horizon). 1.0 when both fits are censored the same way; inf when the
    kind changes."""
    gaps, seeds, k_seed, n_seed = stats.seed_counts(rows)
    return dict(zip((int(s) for s in seeds), _moves(np.log(gaps.astype(float)), k_seed, n_seed)))


def _moves(x: np.ndarray, k_seed: np.ndarray, n_seed: np.ndarray) -> list[float]:
    k, n = k_seed.sum(0), n_seed.sum(0)
    kind, est = stats.fit_counts(x, k, n)
    out = []
    for i in range(len(k_seed)):
        part_kind, part = stats.fit_counts(x, k - k_seed[i], n - n_seed[i])
        if kind == part_kind == "crossed":
            out.append(math.exp(abs(part - est)))
        else:
            out.append(1.0 if kind == part_kind else math.inf)
    return out


def seed_interval(rows: pd.DataFrame, min_gap: int, max_gap: int) -> tuple[float, float]:
    """One seed's horizon as an interval [lo, hi) of gaps, from its (gap, solved) rows: the largest
    solved gap below every failure and the smallest failure (0 when it failed min_gap, inf when it
    solved max_gap)."""
    search = HorizonSearch(start=min_gap, min_gap=min_gap, max_gap=max_gap)
    for gap, ok in zip(rows["gap"], rows["solved"]):
        search.record(int(gap), bool(ok))
    lo, hi = search.lo, search.hi
    if hi is None:  # never failed: at least its largest solved gap (censored when that is max_gap)
        return float(lo), math.inf
    if lo is None:  # never solved
        return 0.0, float(hi)
    return float(lo), float(hi)


def simulate_search(horizon: float, start: int, min_gap: int, max_gap: int, factor: float, grow: float
                    ) -> list[tuple[int, bool]]:
    """The (gap, solved) jobs a horizon search runs for a seed whose horizon is `horizon`."""
    search = HorizonSearch(start, min_gap, max_gap, factor, grow)
    while (gap := search.next_gap()) is not None:
        search.record(gap, gap <= horizon)
    return list(search.results.items())


def draw_horizon(interval: tuple[float, float], max_gap: int, rng: np.random.Generator) -> float:
    lo, hi = interval
    if lo <= 0:
        return 0.0 if hi <= 1 else float(np.exp(rng.uniform(0.0, np.log(hi))))  # below hi, at least gap 1
    if not np.isfinite(hi):
        return math.inf if lo >= max_gap else float(np.exp(rng.uniform(np.log(lo), np.log(max_gap))))
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def pass_rate(intervals: list[tuple[float, float]], n_seeds: int, search: dict, draws: int, rng: np.random.Generator,
              max_move: float = MAX_MOVE) -> float:
    """The simulated probability that the seed-drop test passes with n_seeds seeds."""
    passed = 0
    for _ in range(draws):
        runs = [simulate_search(draw_horizon(intervals[k], search["max_gap"], rng), **search)
                for k in rng.integers(len(intervals), size=n_seeds)]
        gaps = sorted({g for r in runs for g, _ in r})
        col = {g: j for j, g in enumerate(gaps)}
        k_seed, n_seed = np.zeros((n_seeds, len(gaps))), np.zeros((n_seeds, len(gaps)))
        for i, r in enumerate(runs):
            for g, ok in r:
                n_seed[i, col[g]] += 1
                k_seed[i, col[g]] += ok
        passed += max(_moves(np.log(np.array(gaps, float)), k_seed, n_seed)) <= max_move
    return passed / draws


def sweep_rows(all_runs: pd.DataFrame, results_dir: Path, sweep: str) -> tuple[pd.DataFrame, dict]:
    """The sweep's finished rows (from results.load_runs(results_dir)) with `solved` per the task's
    criterion, and its search settings."""
    from gapbench import report, tasks

    from gapbench.results import of_sweeps

    runs = of_sweeps(all_runs, results_dir, [sweep])  # with the finished runs it reused
    if runs.empty:
        raise ValueError(f"no runs of sweep {sweep!r} in {results_dir}/runs")
    (task,) = runs["task"].unique()
    (rep,) = report.tables(runs, task, n_boot=0)
    path = results_dir / "horizons" / f"{sweep}.json"
    if not path.is_file():
        raise ValueError(f"{path} does not exist: --sweep must name a horizon sweep (hydra/sweeper=horizon)")
    summary = json.loads(path.read_text())
    starts = {s["tried"][0]["gap"] for s in summary["searches"]}
    if len(starts) != 1:
        raise ValueError(f"sweep {sweep}: its searches started at several gaps {sorted(starts)}")
    search = {"start": starts.pop(), "min_gap": tasks.task_class(task).min_gap, "max_gap": int(summary["max_gap"]),
              "factor": float(summary["factor"]), "grow": float(summary["grow"])}
    return rep.runs.dropna(subset=["solved"]), search


def table(df: pd.DataFrame, search: dict, seeds: Iterable[int], draws: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = []
    for row, g in df.groupby("row", sort=False):
        h = stats.fit_horizon(g, n_boot=0)
        moves = seed_drop_moves(g)
        worst = max(moves, key=moves.get)
        intervals = [seed_interval(s, search["min_gap"], search["max_gap"]) for _, s in g.groupby("seed")]
        rec = {"model": row, "seeds": len(moves), "horizon": dataclasses.replace(h, lo=math.nan, hi=math.nan).text(),
               "worst drop": f"seed {worst}: {moves[worst]:.2f}x", "job s per seed": g["wall_s"].sum() / len(moves)}
        for n in seeds:
            rec[f"P(pass), {n} seeds"] = pass_rate(intervals, n, search, draws, rng)
        out.append(rec)
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gapbench.analysis.seed_stability", description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: results)")
    p.add_argument("--sweep", action="append", required=True, help="a horizon sweep's sweep_id (repeatable)")
    p.add_argument("--seeds", default="5,10,20,40", help="seed counts to simulate (default: 5,10,20,40)")
    p.add_argument("--draws", type=int, default=200, help="simulated references per seed count (default: 200)")
    a = p.parse_args(argv)
    try:
        seeds = [int(s) for s in a.seeds.split(",")]
        if min(seeds) < 2 or a.draws < 1:
            raise ValueError
    except ValueError:
        print(f"--seeds {a.seeds!r} / --draws {a.draws}: give seed counts >= 2 separated by commas and draws >= 1",
              file=sys.stderr)
        return 2
    from gapbench import results

    runs = results.load_runs(a.results)
    try:
        loaded = {sweep: sweep_rows(runs, a.results, sweep) for sweep in a.sweep}
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    every, hours = {n: 1.0 for n in seeds}, {n: 0.0 for n in seeds}
    for sweep, (df, search) in loaded.items():
        t = table(df, search, seeds, a.draws)
        print(f"sweep {sweep}: search from gap {search['start']} in [{search['min_gap']}, {search['max_gap']}], "
              f"grow {search['grow']:g}, factor {search['factor']:g}; {a.draws} simulated references per seed count; "
              f"pass = no seed drop moves the horizon by more than {MAX_MOVE}x\n")
        print(t.to_markdown(index=False, floatfmt=".2f"))
        per_seed = t["job s per seed"].sum()
        all_pass = {n: t[f"P(pass), {n} seeds"].prod() for n in seeds}
        for n in seeds:
            every[n] *= all_pass[n]
            hours[n] += n * per_seed / 3600
        print("\nevery model passes (models independent): "
              + ", ".join(f"{n} seeds {all_pass[n]:.2f}" for n in seeds)
              + "\nthe search's job time, every model at n seeds (from the job time per seed): "
              + ", ".join(f"{n} seeds {n * per_seed / 3600:.1f} h" for n in seeds) + "\n")
    if len(loaded) > 1:
        print(f"all {len(loaded)} sweeps: every model passes "
              + ", ".join(f"{n} seeds {every[n]:.2f}" for n in seeds)
              + "; the searches' job time " + ", ".join(f"{n} seeds {hours[n]:.1f} h" for n in seeds)
              + " (wall time on w parallel workers: at least that / w)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
