"""Each model's learning rate, selected on the validation split of a learning-rate sweep.

    python -m gapbench.analysis.lr_selection --sweep reference_adding_lr --out reference/horizons/adding_lr.json

The sweep runs every model at several `optim.lr` values on some seeds (e.g. experiment=
reference_adding_lr). For each model the rate with the best mean validation score (`val_score`: the
final validation split, never the test split; the mean over seeds, then over gaps) is selected, as
the report selects rates (the statistics protocol); where rates tie on it (every rate at recall 1.0,
say), the one with the lowest mean validation loss. The file written is what `hydra/sweeper=horizon`
reads with `hydra.sweeper.lr_from=FILE`, so the rates a search uses are measured, never typed:

    {"sweep": ..., "task": "adding", "score": "mse", "higher_is_better": false, "grid": [0.001, ...],
     "cells": {"lstm": {"selected": 0.003, "val": {"0.001": 0.041, ...}, "n": {"0.001": 2, ...},
                        "at_edge": false}, ...}}

A rate at the edge of the grid is flagged (the best rate may lie outside it: widen the grid).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from gapbench import results


class SelectionError(ValueError):
    """The store cannot give a selection (no such sweep, no validation scores, several tasks)."""


def mean_validation(df: pd.DataFrame, by: list[str]) -> pd.Series:
    """The selection rule's score per (*by, lr): the mean validation score over seeds at each gap,
    then the mean of those over gaps (a `by` holding "gap" keeps gaps apart). Columns: by, gap, lr, val_score."""
    per_gap = df.groupby(list(dict.fromkeys([*by, "gap", "lr"])))["val_score"].mean()
    return per_gap.groupby(level=[*by, "lr"]).mean()


def best_rates(df: pd.DataFrame, by: list[str], higher: bool) -> pd.DataFrame:
    """The selected rate per `by` group (non-empty; columns: *by, lr, val, loss, tied): the best mean
    validation score (mean_validation); where several rates tie on it (e.g. every rate at recall 1.0),
    the one with the lowest mean validation loss (`val/loss`, averaged the same way). `tied`: the score tied."""
    val = mean_validation(df, by).rename("val")
    losses = pd.to_numeric(df["val/loss"], errors="coerce") if "val/loss" in df else pd.Series(math.nan, df.index)
    loss = mean_validation(df.assign(val_score=losses), by).rename("loss")
    t = pd.concat([val, loss], axis=1).reset_index().dropna(subset=["val"])
    t = t.sort_values(["val", "loss"], ascending=[not higher, True], na_position="last", kind="stable")
    t["tied"] = t.assign(at_best=t["val"] == t.groupby(by)["val"].transform("first")) \
        .groupby(by)["at_best"].transform("sum") > 1
    return t.groupby(by).head(1)


def select(runs: pd.DataFrame, sweep: str) -> dict[str, Any]:
    df = runs[(runs["sweep_id"] == sweep) & (runs["status"] == "finished")].copy()
    if df.empty:
        raise SelectionError(f"no finished runs of sweep {sweep!r} in the store")
    if df["task"].nunique() != 1:
        raise SelectionError(f"sweep {sweep!r} holds several tasks ({', '.join(sorted(df['task'].unique()))}); "
                             "select per task")
    df["lr"] = pd.to_numeric(df.get("cfg.optim.lr"), errors="coerce")
    df["val_score"] = pd.to_numeric(df.get("val_score"), errors="coerce")
    df = df.dropna(subset=["lr", "val_score"])
    if df.empty:
        raise SelectionError(f"sweep {sweep!r} has no rows with both optim.lr and val_score")
    higher = bool(df["higher_is_better"].iloc[0])
    grid = sorted(df["lr"].unique())
    picks = best_rates(df, ["cell"], higher).set_index("cell")
    cells: dict[str, Any] = {}
    for cell, g in df.groupby("cell", sort=False):
        val = mean_validation(g, [])
        pick = picks.loc[cell]
        best = float(pick["lr"])
        cells[cell] = {"selected": best,
                       "val": {repr(float(lr)): float(v) for lr, v in val.items()},
                       "tie_broken_by_val_loss": bool(pick["tied"]),
                       "n": {repr(float(lr)): int(n) for lr, n in g.groupby("lr").size().items()},
                       "at_edge": len(grid) > 1 and best in (grid[0], grid[-1])}
    return {"sweep": sweep, "task": str(df["task"].iloc[0]), "score": str(df["score_name"].iloc[0]),
            "higher_is_better": higher, "grid": [float(x) for x in grid],
            "seeds": sorted(int(s) for s in df["seed"].unique()),
            "gaps": sorted(int(x) for x in df["gap"].unique()),
            "max_steps": int(df["cfg.trainer.max_steps"].iloc[0]) if "cfg.trainer.max_steps" in df else None,
            "rule": "per model, the rate with the best mean validation score (mean over seeds, then gaps); "
                    "a tie on it broken by the lower mean validation loss",
            "cells": cells}


def read(path: str | Path) -> dict[str, Any]:
    """A selection file written by this module; SelectionError with one line if it is not one."""
    p = Path(path).expanduser()
    try:
        sel = json.loads(p.read_text())
        if not isinstance(sel.get("cells"), dict) or not all(
                isinstance(c.get("selected"), (int, float)) and math.isfinite(c["selected"]) and c["selected"] > 0
                for c in sel["cells"].values()):
            raise ValueError("no 'cells' with a positive 'selected' rate")
    except FileNotFoundError:
        raise SelectionError(f"no learning-rate selection file at {p} (write one with python -m gapbench.analysis.lr_selection)")
    except (ValueError, AttributeError, UnicodeDecodeError, OSError) as e:
        raise SelectionError(f"{p} is not a learning-rate selection (python -m gapbench.analysis.lr_selection): {e}")
    return sel


def table(sel: dict[str, Any]) -> str:
    grid = sel["grid"]
    head = "| model | " + " | ".join(f"val {sel['score']} @ lr {lr:g}" for lr in grid) + " | selected |"
    lines = [head, "|" + "---|" * (len(grid) + 2)]
    for cell, c in sel["cells"].items():
        vals = [c["val"].get(repr(lr)) for lr in grid]
        shown = " | ".join("" if v is None else f"{v:.4g}" for v in vals)
        notes = [n for n, on in (("tie on the score: lower validation loss", c.get("tie_broken_by_val_loss")),
                                 ("grid edge", c["at_edge"])) if on]
        note = f" ({'; '.join(notes)})" if notes else ""
        lines.append(f"| {cell} | {shown} | {c['selected']:g}{note} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m gapbench.analysis.lr_selection", description=__doc__.split("\n")[0])
    p.add_argument("--results", default="results", metavar="DIR", help="results store (default: results)")
    p.add_argument("--sweep", required=True, metavar="ID", help="the learning-rate sweep's sweep_id")
    p.add_argument("--out", required=True, metavar="FILE", help="selection file to write (JSON)")
    args = p.parse_args(argv)
    from gapbench.paths import output_file_problem

    problem = output_file_problem(args.out, f"--out {args.out}", makes_folder=True)
    if problem:  # before the store is read: the selection is never computed only to be lost
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    if not (Path(args.results) / results.RUNS).is_dir():
        print(f"error: --results {args.results}: no results store there (no runs/ folder)", file=sys.stderr)
        sys.exit(2)
    try:
        sel = select(results.of_sweeps(results.load_runs(args.results), args.results, [args.sweep]), args.sweep)
    except SelectionError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results._atomic_write_json(out, sel)
    out.with_suffix(".md").write_text(
        f"# Learning rates selected on validation: sweep `{sel['sweep']}`, task `{sel['task']}`\n\n"
        f"Rule: {sel['rule']}; seeds {', '.join(map(str, sel['seeds']))}; gap(s) "
        f"{', '.join(map(str, sel['gaps']))}; {sel['max_steps']} steps. Written by `python -m gapbench.analysis.lr_selection`.\n\n"
        + table(sel) + "\n", encoding="utf-8")
    print(table(sel))
    edge = [c for c, v in sel["cells"].items() if v["at_edge"]]
    if edge:
        print(f"note: selected rate at the grid's edge for {', '.join(edge)}: the best rate may lie outside the grid")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
