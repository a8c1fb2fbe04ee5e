"""What a horizon search cost against a full log-spaced grid of the same resolution (docs/development/performance_log.md).

    python -m gapbench.analysis.horizon_cost --results-dir DIR --sweep SWEEP_ID [--sweep ...]

For each search of a `hydra/sweeper=horizon` sweep (results_dir/horizons/<sweep>.json) it counts the
jobs the search trained, their training steps, their time steps (steps x unrolled sequence length:
the machine-independent cost) and their measured wall time (rows' wall_s). It compares two grids
of gaps min_gap * factor^k (rounded down, consecutive ratio <= factor): "explored", up to the
largest gap any search of the sweep tried (the smallest grid that brackets every horizon the search
found to the same factor: it presumes knowing where the horizons lie), and "full", up to the
search's max_gap (the range the search was allowed, fixed before any job ran). A grid job trains its whole
budget (trainer.max_steps, no stop_when_solved), so its steps and time steps are exact counts. For a
grid whose jobs also stop when solved, an estimate: a job at or above a search's failed gap trains
its whole budget, any other the mean steps that search's solved jobs took. The
grid's time is an estimate: each job's steps times the per-step time at its sequence length, from a
straight line fitted per cell to the search's own jobs (wall_s / steps against sequence length).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from gapbench import results, tasks


def grid_gaps(min_gap: int, max_gap: int, factor: float) -> list[int]:
    """Log-spaced integer gaps from min_gap to max_gap with consecutive ratio <= factor."""
    gaps, g = [], float(min_gap)
    while True:
        gap = min(max_gap, max(round(g), gaps[-1] + 1 if gaps else min_gap))
        gaps.append(gap)
        if gap >= max_gap:
            return gaps
        g = math.floor(gap * factor)


def sweep_cost(results_dir: Path, sweep: str) -> pd.DataFrame:
    hz = json.loads((results_dir / "horizons" / f"{sweep}.json").read_text())
    factor = hz["factor"]
    rows = []
    for s in hz["searches"]:
        cls = tasks.task_class(s["task"])
        for t in s["tried"]:
            run = results.read_run(results_dir, t["run_id"])
            rows.append({"task": s["task"], "cell": s["cell"], "seed": s["seed"], "bracket": s["bracket"],
                         "gap": t["gap"], "seq_len": cls.steps_for_gap(t["gap"]), "steps": run["steps"],
                         "max_steps": run["cfg.trainer.max_steps"], "wall_s": run["wall_s"],
                         "failed_gap": s["failed_gap"],
                         "min_gap": max(cls.min_gap, 1)})
    jobs = pd.DataFrame(rows)
    jobs["time_steps"] = jobs["steps"] * jobs["seq_len"]
    jobs["s_per_step"] = jobs["wall_s"] / jobs["steps"]
    gaps = grid_gaps(int(jobs["min_gap"].min()), int(jobs["gap"].max()), factor)
    full = grid_gaps(int(jobs["min_gap"].min()), int(hz["max_gap"]), factor)
    out = []
    for cell, c in jobs.groupby("cell", sort=False):
        slope, icpt = np.polyfit(c["seq_len"], c["s_per_step"], 1) if c["seq_len"].nunique() > 1 else (0.0, c["s_per_step"].mean())
        cls = tasks.task_class(c["task"].iloc[0])
        seq = np.array([cls.steps_for_gap(g) for g in gaps])
        budget = int(c["max_steps"].iloc[0])
        n_seeds = c["seed"].nunique()
        stop_est = 0
        for _, per_seed in c.groupby("seed"):
            hi = per_seed["failed_gap"].iloc[0]
            hi = None if pd.isna(hi) else hi
            solved = per_seed[per_seed["gap"] < (hi if hi is not None else math.inf)]["steps"]
            steps = np.where([hi is not None and g >= hi for g in gaps], budget, solved.mean() if len(solved) else budget)
            stop_est += int((steps * seq).sum())
        out.append({"task": c["task"].iloc[0], "cell": cell, "seeds": n_seeds,
                    "brackets": ", ".join(c.drop_duplicates("seed")["bracket"]),
                    "search jobs": len(c), "grid jobs": len(gaps) * n_seeds, "full grid jobs": len(full) * n_seeds,
                    "search time steps": int(c["time_steps"].sum()),
                    "grid time steps": int(budget * seq.sum() * n_seeds), "stop grid time steps (est.)": stop_est,
                    "search wall s": float(c["wall_s"].sum()),
                    "grid wall s (est.)": float(budget * np.clip(icpt + slope * seq, 0, None).sum() * n_seeds)})
    table = pd.DataFrame(out)
    table.attrs.update(grid=gaps, full=full, factor=factor)
    return table


def markdown(table: pd.DataFrame) -> str:
    total = table.sum(numeric_only=True)
    full = table.attrs["full"]
    lines = [f"Explored grid (ratio <= {table.attrs['factor']}): {', '.join(map(str, table.attrs['grid']))}; "
             f"full grid: {len(full)} gaps, {full[0]} ... {full[-1]}", "",
             "| cell | seeds | brackets | jobs: search / grid / full grid | time steps: search / grid / "
             "grid stopping when solved (est.) | wall s: search / grid (est.) |", "|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        lines.append(f"| {r['cell']} | {r['seeds']} | {r['brackets']} | {r['search jobs']} / {r['grid jobs']} / {r['full grid jobs']} | "
                     f"{r['search time steps']:.3g} / {r['grid time steps']:.3g} / {r['stop grid time steps (est.)']:.3g} | "
                     f"{r['search wall s']:.0f} / {r['grid wall s (est.)']:.0f} |")
    lines.append(f"| **all** | | | {total['search jobs']:.0f} / {total['grid jobs']:.0f} / {total['full grid jobs']:.0f} "
                 f"({total['search jobs'] / total['grid jobs']:.0%} / {total['search jobs'] / total['full grid jobs']:.0%}) | "
                 f"{total['search time steps']:.3g} / {total['grid time steps']:.3g} / {total['stop grid time steps (est.)']:.3g} "
                 f"({total['search time steps'] / total['grid time steps']:.0%} / "
                 f"{total['search time steps'] / total['stop grid time steps (est.)']:.0%}) | "
                 f"{total['search wall s']:.0f} / {total['grid wall s (est.)']:.0f} "
                 f"({total['search wall s'] / total['grid wall s (est.)']:.0%}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gapbench.analysis.horizon_cost", description=__doc__.splitlines()[0])
    p.add_argument("--results-dir", default="results")
    p.add_argument("--sweep", action="append", required=True, help="sweep id of a hydra/sweeper=horizon run")
    args = p.parse_args(argv)
    for sweep in args.sweep:
        path = Path(args.results_dir) / "horizons" / f"{sweep}.json"
        if not path.exists():
            print(f"error: no horizon search {path}; give the sweep_id of a hydra/sweeper=horizon run", file=sys.stderr)
            return 2
        table = sweep_cost(Path(args.results_dir), sweep)
        print(f"## {sweep} ({table['task'].iloc[0]})\n\n{markdown(table)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
