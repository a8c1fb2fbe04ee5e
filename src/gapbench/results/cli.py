"""The results store from the shell (`python -m gapbench.results ...`).

    python -m gapbench.results ls [--task copy] [--cell lstm] [--gap 10 100] [--sweep S] [--status finished]
    python -m gapbench.results show RUN_ID
    python -m gapbench.results export --csv runs.csv [filters]      # or --parquet runs.parquet
    python -m gapbench.results compare --task copy [--sweep S] [--where cfg.trainer.max_steps=2000]

`compare` pivots one task into cells x gaps (mean score over seeds, n in brackets) and refuses,
in one line naming the keys that differ, when the filtered rows hold more than one condition.
Bad input: one line on stderr, exit 2.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd

from gapbench.config import conditions
from gapbench.paths import name_problem, output_file_problem
from gapbench.results import UnusableRecord, load_runs, of_sweeps, read_row, run_path

LS_COLUMNS = ["run_id", "task", "cell", "gap", "seed", "status", "score_name", "score", "baseline", "steps",
              "wall_s", "sweep_id"]
# the keys that a comparison varies by design: its rows and columns
COMPARED = {"cfg.cell.name", "cfg.gap"}


class CliError(Exception):
    pass


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", default="results", help="results directory (default: results)")
    p.add_argument("--task", nargs="+", help="only these tasks")
    p.add_argument("--cell", nargs="+", help="only these cells")
    p.add_argument("--gap", nargs="+", type=int, help="only these gaps")
    p.add_argument("--seed", nargs="+", type=int, help="only these seeds")
    p.add_argument("--sweep", nargs="+", help="only these sweep ids")
    p.add_argument("--status", nargs="+", help="only these statuses (finished, diverged)")
    p.add_argument("--where", nargs="+", default=[], metavar="COL=VALUE",
                   help="only rows whose column equals VALUE, e.g. cfg.trainer.max_steps=2000")


def _coerce(series: pd.Series, text: str):
    for kind in (int, float):
        try:
            value = kind(text)
            if pd.api.types.is_numeric_dtype(series) or series.map(lambda v: isinstance(v, (int, float))).any():
                return value
        except ValueError:
            pass
    return {"true": True, "false": False, "null": None}.get(text.lower(), text)


def select(df: pd.DataFrame, args: argparse.Namespace) -> pd.DataFrame:
    if args.sweep:  # a sweep's rows include the finished runs it reused from earlier sweeps
        df = of_sweeps(df, args.results, args.sweep)
    for column, wanted in [("task", args.task), ("cell", args.cell), ("gap", args.gap), ("seed", args.seed),
                           ("status", args.status)]:
        if wanted:
            df = df[df[column].isin(wanted)]
    for cond in args.where:
        key, sep, text = cond.partition("=")
        if not sep:
            raise CliError(f"--where {cond!r} is not COL=VALUE; e.g. --where cfg.trainer.max_steps=2000")
        if key not in df:
            raise CliError(f"--where: no column {key!r}; columns look like task, steps, cfg.trainer.max_steps")
        value = _coerce(df[key], text)
        df = df[df[key].isna()] if value is None else df[df[key] == value]
    return df


def _load(args) -> pd.DataFrame:
    results = Path(args.results)
    if not (results / "runs").is_dir():
        raise CliError(f"no results store at {results} (no runs/ folder); give --results DIR")
    return load_runs(results)


def _table(df: pd.DataFrame) -> str:
    from tabulate import tabulate

    def fmt(v):
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.4g}"
        return v
    return tabulate([[fmt(v) for v in row] for row in df.itertuples(index=False)], headers=list(df.columns),
                    tablefmt="simple", disable_numparse=True)


def cmd_ls(args) -> int:
    df = select(_load(args), args).sort_values(["task", "cell", "gap", "seed", "run_id"])
    print(_table(df[LS_COLUMNS]) if len(df) else "no runs match")
    print(f"{len(df)} run(s)", file=sys.stderr)
    return 0


def cmd_show(args) -> int:
    problem = name_problem("run id", args.run_id)
    if problem:
        raise CliError(problem)
    path = run_path(args.results, args.run_id)
    if not path.exists():
        matches = sorted(p.stem for p in (Path(args.results) / "runs").glob(f"{args.run_id}*.json"))
        if len(matches) != 1:
            hint = f"; it prefixes {len(matches)} runs: {', '.join(matches[:5])}" if matches else ""
            raise CliError(f"no run {args.run_id!r} in {args.results}{hint}")
        path = run_path(args.results, matches[0])
    try:
        row = read_row(path)
    except UnusableRecord as e:
        raise CliError(f"run record {path} cannot be shown: {e}") from None
    width = max(map(len, row))
    for key, value in row.items():
        print(f"{key:{width}}  {value}")
    return 0


def cmd_export(args) -> int:
    df = select(_load(args), args)
    if args.parquet:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            print("export: --parquet needs pyarrow (pip install 'gapbench[parquet]'); skipped", file=sys.stderr)
            return 1 if not args.csv else _write_csv(df, args.csv)
        typed, as_text = one_type_per_column(df)
        typed.to_parquet(args.parquet, index=False)
        note = f" ({len(as_text)} column(s) of mixed types written as text: {', '.join(as_text[:5])}" \
               f"{', ...' if len(as_text) > 5 else ''})" if as_text else ""
        print(f"{len(df)} run(s) -> {args.parquet}{note}", file=sys.stderr)
    if args.csv:
        _write_csv(df, args.csv)
    return 0


def one_type_per_column(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The rows with every column of one type, as Parquet needs: a column whose values have more than
    one type (`cfg.progress`: false in one row, 10 in another; lists beside numbers) is written as
    text (JSON for lists and dicts, missing values stay missing). Returns (frame, the columns converted)."""
    out, converted = df.copy(), []
    for col in df.columns[df.dtypes == object]:  # noqa: E721 (a pandas dtype mask, not a type check)
        values = df[col].dropna()
        kinds = {type(v) for v in values}
        if len(kinds) <= 1 and not kinds & {list, dict}:
            continue
        out[col] = df[col].map(lambda v: v if v is None or (isinstance(v, float) and math.isnan(v))
                               else json.dumps(v) if isinstance(v, (list, dict, bool)) else str(v))
        converted.append(col)
    return out, converted


def _write_csv(df: pd.DataFrame, path: str) -> int:
    df.to_csv(path, index=False)
    print(f"{len(df)} run(s) -> {path}", file=sys.stderr)
    return 0


def pivot(df: pd.DataFrame, task: str) -> pd.DataFrame:
    """Cells x gaps of one task: 'mean (n)' of the score over seeds. Raises CliError when the rows
    hold more than one condition (some cell, gap and seed measured under different configs)."""
    df = df[(df["task"] == task) & df["status"].isin(["finished", "diverged"])]
    if df.empty:
        raise CliError(f"no finished runs of task {task!r} match")
    if df.duplicated(["cell", "gap", "seed"]).any():
        cfg_cols = [c for c in df.columns if c.startswith("cfg.") and c not in COMPARED
                    and not conditions.not_a_condition(c.removeprefix("cfg."))]
        differ = [c for c in cfg_cols if df[c].astype(str).nunique() > 1]
        raise CliError(f"the rows of task {task!r} hold more than one condition (they differ in "
                       f"{', '.join(differ) or 'config_hash'}); narrow with --sweep or --where KEY=VALUE")
    from gapbench.cells import names as cell_order

    order = [c for c in cell_order() if c in set(df["cell"])] + sorted(set(df["cell"]) - set(cell_order()))
    mean = df.pivot_table(index="cell", columns="gap", values="score", aggfunc="mean").reindex(order)
    n = df.pivot_table(index="cell", columns="gap", values="score", aggfunc="count").reindex(order)
    out = mean.copy().astype(object)
    for cell in mean.index:
        for gap in mean.columns:
            m, k = mean.loc[cell, gap], n.loc[cell, gap]
            out.loc[cell, gap] = "" if pd.isna(k) or k == 0 else f"{m:.4g} ({int(k)})"
    out.columns = [f"gap {g}" for g in out.columns]
    return out.reset_index()


def cmd_compare(args) -> int:
    df = select(_load(args), args)
    task = args.task[0]
    table = pivot(df, task)
    name = df.loc[df["task"] == task, "score_name"].dropna().iloc[0]
    print(f"{task}: mean {name} over seeds (n)")
    print(_table(table))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gapbench.results", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("ls", help="list runs (filters: --task --cell --gap --seed --sweep --status --where)")
    _add_filters(ls)
    show = sub.add_parser("show", help="every field of one run's row")
    show.add_argument("run_id", help="a run id, or a unique prefix of one")
    show.add_argument("--results", default="results")
    export = sub.add_parser("export", help="write the (filtered) runs to CSV and/or Parquet")
    _add_filters(export)
    export.add_argument("--csv", metavar="FILE")
    export.add_argument("--parquet", metavar="FILE")
    compare = sub.add_parser("compare", help="one task's cells x gaps: mean score over seeds (n)")
    _add_filters(compare)
    compare.set_defaults(func=cmd_compare)
    for parser, func in [(ls, cmd_ls), (show, cmd_show), (export, cmd_export)]:
        parser.set_defaults(func=func)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "export" and not (args.csv or args.parquet):
            raise CliError("export needs --csv FILE and/or --parquet FILE")
        if args.command == "export":
            for flag, path in (("--csv", args.csv), ("--parquet", args.parquet)):
                problem = path and output_file_problem(path, f"{flag} {path}")
                if problem:
                    raise CliError(problem)
        if args.command == "compare" and (not args.task or len(args.task) != 1):
            raise CliError("compare needs exactly one --task; e.g. compare --task copy")
        return args.func(args)
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
