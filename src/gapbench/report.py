"""Paper-style tables, degradation plots and memory horizons from the results store.

    python -m gapbench.report                        # results/ -> results/report/ (git-ignored)
    python -m gapbench.report --results reference    # the committed reference result
    python -m gapbench.report --results R --out O --wandb

For every task present: `<task>.md`, `<task>.tex` (booktabs), `<task>_degradation.png`,
`<task>_horizon.md`, `<task>_gradients.png` (where gradient curves were recorded); then
`published.md` (Bai et al. 2018 next to our matching runs) and `index.md` linking it all.
How to read them, and the memory-horizon criteria: docs/report.md.

The functions here take DataFrames (`load_runs` / `load_curves` output), so they can be used
from a notebook; `main` only wraps them with the results store and the command line.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import os
import re
import shlex
import textwrap
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from gapbench import cells as cell_registry
from gapbench.config import conditions
from gapbench.analysis import lr_selection, stats
from gapbench import tasks as task_registry

# -- names and "solved" criteria come from the components themselves (Task / cell metadata) -------
RELATIVE_SOLVED = 0.5      # tasks without a fixed criterion: closes >= 50% of the distance baseline -> the cell's best mean
BAND = "95% t-interval of the mean over seeds"
PUBLISHED_CSV = Path(__file__).with_name("data") / "published_bai2018.csv"
NUMERIC = ["gap", "seed", "steps", "wall_s", "score", "val_score", "test_loss", "baseline"]


class ReportError(Exception):
    """Bad input for a report; the message is shown to the user as one line."""


# -- formatting ----------------------------------------------------------------------------------
def fmt(x: float, sig: int = 4) -> str:
    """`sig` significant digits, fixed-point between 1e-3 and 1e6, else scientific (5.3e-05)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    x = float(x)
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1e6 or a < 1e-3:
        mant, exp = f"{x:.{sig - 1}e}".split("e")
        mant = mant.rstrip("0").rstrip(".") if "." in mant else mant
        return f"{mant}e{exp}"
    decimals = sig - 1 - math.floor(math.log10(a))
    x = round(x, decimals)
    return f"{x:.{max(decimals, 0)}f}"


def fmt_gap(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 10 else fmt(x, 3)


def _denoise(mean: float, std: float) -> float:
    """A std that is only floating-point noise (equal scores summed in another order) shows as 0."""
    return 0.0 if std <= 1e-9 * max(abs(mean), 1e-300) else std


def arrow(higher_is_better: bool) -> str:
    return "↑ higher is better" if higher_is_better else "↓ lower is better"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_TEX_SYMBOLS = {"±": r"$\pm$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "≥": r"$\geq$", "≤": r"$\leq$",
                "—": "---", "–": "--", "‖": r"$\|$", "∂": r"$\partial$", "×": r"$\times$",
                "≈": r"$\approx$", "α": r"$\alpha$", "·": r"$\cdot$", "≠": r"$\neq$", "…": r"\ldots{}"}


def tex_escape(s: Any) -> str:
    """Plain text -> LaTeX text: special characters escaped, the few symbols we print as math."""
    out = []
    for ch in str(s):
        out.append(_TEX.get(ch) or _TEX_SYMBOLS.get(ch) or ch)
    return "".join(out)


def tex_number(s: str) -> str:
    """'5.3e-05' -> '$5.3\\times10^{-5}$'; other numbers as they are."""
    if "e" in s and s.replace("e", "", 1).replace("-", "").replace("+", "").replace(".", "").isdigit():
        mant, exp = s.split("e")
        return f"${mant}\\times10^{{{int(exp)}}}$"
    return s


def score_title(task: str, score_name: str | None) -> str:
    """The metric in words ('recall accuracy') where the task names it, else its key."""
    cls = task_registry.find(task)
    return cls.score_title if cls is not None and score_name == cls.score_name else str(score_name)


def task_title(task: str) -> str:
    cls = task_registry.find(task)
    return cls.title if cls else task


def gap_meaning(task: str) -> str:
    cls = task_registry.find(task)
    return cls.gap_meaning if cls else "gap"


def cell_order(cells: Iterable[str]) -> list[str]:
    cells = list(dict.fromkeys(cells))
    return [c for c in cell_registry.names() if c in cells] + sorted(c for c in cells if c not in cell_registry.names())


def task_order(tasks: Iterable[str]) -> list[str]:
    """Tasks in registry order (the README's), unknown ones after, by name."""
    tasks = list(dict.fromkeys(tasks))
    return [t for t in task_registry.names() if t in tasks] + sorted(t for t in tasks if t not in task_registry.names())


# -- aggregation ---------------------------------------------------------------------------------
def prepare(runs: pd.DataFrame) -> pd.DataFrame:
    """Types the store's columns (numbers as numbers, gap/seed as int), drops rows with no task and
    (re)computes each row's `condition` from its `cfg.*` columns (gapbench.config.conditions)."""
    df = runs.copy()
    for col in NUMERIC:
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    df = df[df["task"].notna() & df["cell"].notna() & df["gap"].notna()].copy()
    df["gap"] = df["gap"].astype(int)
    if "seed" in df:
        df["seed"] = df["seed"].fillna(-1).astype(int)
    df["status"] = df["status"].fillna("unknown").astype(str)
    df["stopped_by"] = df["stopped_by"].astype(object) if "stopped_by" in df else None
    if "val_score" not in df:
        df["val_score"] = np.nan
    df["higher_is_better"] = df["higher_is_better"].map(
        lambda v: v if isinstance(v, (bool, np.bool_)) else str(v).lower() in ("true", "1"))
    return conditions.assign(df)


def time_capped(df: pd.DataFrame) -> pd.Series:
    """Finished runs that the opt-in wall-clock cap (trainer.max_time) stopped before max_steps."""
    return (df["status"] == "finished") & (df["stopped_by"].astype(str) == "max_time")


def _one(values: pd.Series) -> Any:
    """The value a column should hold once per task (the most common one)."""
    values = values.dropna()
    return values.mode().iloc[0] if len(values) else None


@dataclass
class Criterion:
    text: str                        # how it reads in the report
    task_class: Any = None            # solved: the task's own criterion (Task.solved_threshold)
    relative: float | None = None     # solved: closes this fraction of baseline -> the cell's best mean


def criterion_for(task: str, score_name: str | None, higher: bool) -> Criterion:
    cls = task_registry.find(task)
    if cls is not None and cls.solved_text and score_name == cls.score_name:
        return Criterion(cls.solved_text, task_class=cls)
    return Criterion(f"{score_title(task, score_name)} closes ≥ {RELATIVE_SOLVED:.0%} of the distance from the "
                     "baseline to the cell's own best mean score (over gaps)", relative=RELATIVE_SOLVED)


def _row_keys(keys: dict[str, Any]) -> dict[str, Any]:
    """The keys that tell rows of one table apart: the cell's own settings (not the gap, rate or seed)."""
    return {k: v for k, v in keys.items() if k.startswith("cell.")}


def _setting_keys(keys: dict[str, Any]) -> dict[str, Any]:
    """The keys one table holds fixed: everything but the cell's settings, the gap and the rate."""
    return {k: v for k, v in keys.items() if not k.startswith("cell.") and k not in ("gap", "optim.lr")}


def summarize(runs: pd.DataFrame, row: str = "cell") -> pd.DataFrame:
    """One row per (task, `row`, gap): n, mean, 95% t interval (lo, hi, half), std (ddof=1), min,
    max over the *finished* seeds (runs stopped by max_time count apart, as `time_capped`), the
    counts of diverged / failed / other runs, the baseline and the metric's name and direction.
    Aggregate one condition per (task, row, gap) only: `tables` does that grouping."""
    df = prepare(runs) if "condition" not in runs else runs
    if row not in df:
        df = df.assign(**{row: df["cell"]})
    capped = time_capped(df)
    rows = []
    for (task, key, gap), g in df.groupby(["task", row, "gap"], sort=True):
        ok = g[(g["status"] == "finished") & ~capped.loc[g.index]]["score"].dropna()
        ci = stats.t_interval(ok)
        rows.append({
            "task": task, row: key, "cell": _one(g["cell"]), "gap": int(gap), "n": ci.n, "mean": ci.mean,
            "lo": ci.lo, "hi": ci.hi, "half": ci.half, "std": ok.std(ddof=1) if ok.size > 1 else np.nan,
            "min": ok.min() if ok.size else np.nan, "max": ok.max() if ok.size else np.nan,
            "diverged": int((g["status"] == "diverged").sum()), "failed": int((g["status"] == "failed").sum()),
            "other": int((~g["status"].isin(["finished", "diverged", "failed"])).sum()),
            "time_capped": int(capped.loc[g.index].sum()),
            "finished_without_score": int(((g["status"] == "finished") & g["score"].isna()).sum()),
            "baseline": g["baseline"].dropna().mean() if g["baseline"].notna().any() else np.nan,
            "score_name": _one(g["score_name"]), "higher_is_better": bool(_one(g["higher_is_better"])),
        })
    cols = ["task", row] + (["cell"] if row != "cell" else []) + [
        "gap", "n", "mean", "lo", "hi", "half", "std", "min", "max", "diverged", "failed", "other", "time_capped",
        "finished_without_score", "baseline", "score_name", "higher_is_better"]
    return pd.DataFrame(rows, columns=cols)


# -- tables --------------------------------------------------------------------------------------
@dataclass
class TaskReport:
    """One table: the runs of one task under one setting (every config key but the cell's own, the
    gap, the rate and the seed fixed). Its rows are cells (or cell variants), its columns gaps."""
    task: str
    summary: pd.DataFrame         # summarize() rows, keyed by `row` (+ lr, solved, label, best)
    horizons: pd.DataFrame        # stats.horizons() per row (+ label)
    criterion: Criterion
    setting: str = ""             # id of the fixed keys
    setting_label: str = ""       # how this table differs from the task's other tables ('' if alone)
    setting_keys: dict = None     # the fixed keys themselves
    lr_note: str = ""             # what the learning-rate selection did ('' when no rates to choose from)
    duplicates: int = 0           # finished runs repeating a (condition, seed) already counted (older dropped)
    runs: pd.DataFrame = None     # the finished runs in the table's entries
    labels: dict = None           # row -> human label
    lr_grid: dict = None          # row -> the rates its runs tried, sorted (the selection's grid)

    @property
    def score_name(self) -> str:
        return str(self.summary["score_name"].iloc[0])

    @property
    def higher(self) -> bool:
        return bool(self.summary["higher_is_better"].iloc[0])

    @property
    def title(self) -> str:
        return task_title(self.task)

    @property
    def metric(self) -> str:
        return score_title(self.task, self.score_name)

    @property
    def gaps(self) -> list[int]:
        return sorted(self.summary["gap"].unique())

    @property
    def rows(self) -> list[str]:
        order = {c: i for i, c in enumerate(cell_order(self.summary["cell"]))}
        keys = self.summary.drop_duplicates("row")[["row", "cell"]]
        return sorted(keys["row"], key=lambda r: (order[keys.set_index("row").loc[r, "cell"]], r))

    @property
    def cells(self) -> list[str]:
        return cell_order(self.summary["cell"])

    @property
    def has_solved(self) -> bool:
        return self.criterion.task_class is not None

    @property
    def shows_lr(self) -> bool:
        """Every table with a known rate shows it, selected or not."""
        return bool(self.summary["lr"].notna().any())

    def lr_text(self, row: str) -> str:
        """The row's rate(s); '(grid edge)' where a selected rate is the smallest or largest tried."""
        rates = sorted(self.summary.loc[self.summary["row"] == row, "lr"].dropna().unique())
        grid = (self.lr_grid or {}).get(row, [])
        edge = len(grid) > 1 and any(r in (grid[0], grid[-1]) for r in rates)
        return ", ".join(conditions.show(r) for r in rates) + (" (grid edge)" if edge else "")

    @property
    def at_edge(self) -> bool:
        return any(self.lr_text(r).endswith("(grid edge)") for r in self.rows)

    @property
    def slug(self) -> str:
        """File stem: the task, plus what sets this table apart when the task has several
        (`copy-max_steps-2000`), cut to a readable length (the setting's id keeps it unique)."""
        if not self.setting_label:
            return self.task
        words = re.sub(r"[^A-Za-z0-9._]+", "-", self.setting_label.replace("trainer.", "").replace("task.", "")).strip("-")
        return f"{self.task}-{words}" if len(words) <= 40 else f"{self.task}-{words[:32].rstrip('-')}-{self.setting[:6]}"

    @property
    def budget(self) -> str:
        """'1000 training steps, hidden size 128': what every number of this table was trained under."""
        def values(col: str) -> list[int]:
            if self.runs is None or col not in self.runs:
                return []
            return sorted(pd.to_numeric(self.runs[col], errors="coerce").dropna().astype(int).unique())

        def span(vals: list[int]) -> str:
            return str(vals[0]) if len(vals) == 1 else f"{vals[0]}–{vals[-1]} (by row)"
        steps, hidden = values("cfg.trainer.max_steps"), values("cfg.cell.hidden_size")
        return ", ".join(([f"{span(steps)} training steps"] if steps else [])
                         + ([f"hidden size {span(hidden)}"] if hidden else []))

    @property
    def reused_note(self) -> str:
        """Where a selected sweep reused finished runs of earlier sweeps: how many, from which."""
        if self.runs is None or "reused_from" not in self.runs:
            return ""
        reused = self.runs["reused_from"].dropna()
        if reused.empty:
            return ""
        return (f" {len(reused)} of the {len(self.runs)} runs were reused from earlier sweeps "
                f"({', '.join(sorted(reused.astype(str).unique()))}), as the sweep found them finished.")

    def baselines(self) -> dict[int, float]:
        return self.summary.groupby("gap")["baseline"].mean().to_dict()

    def label(self, row: str) -> str:
        return (self.labels or {}).get(row, row)

    def caption(self) -> str:
        cond = f" [{self.setting_label}]" if self.setting_label else ""
        solved = (f"; solved = seeds meeting {self.criterion.text} / seeds" if self.has_solved else "")
        if solved and self.runs is not None and _stopped_when_solved(self.runs).any():
            solved += " (judged on the validation split: the jobs stopped when it was met)"
        budget = f", {self.budget}" if self.budget else ""
        lr = ""
        if self.shows_lr:
            lr = (" lr: each row's learning rate" + (", selected on validation" if self.lr_note else "")
                  + ("; '(grid edge)': the smallest or largest rate tried, the best may lie outside the grid"
                     if self.at_edge else "") + ".")
        return (f"{self.title}{cond}{budget}: {self.metric} ({arrow(self.higher)}) by gap ({gap_meaning(self.task)}). "
                f"Mean ± 95% t-interval half-width over n seeds{solved}. Bold: better than every other cell "
                f"at that gap by a two-sided exact permutation test (α = {stats.ALPHA}) and 95% interval clear "
                f"of the baseline; no bold where no cell is.{lr}{self.reused_note}")

    def excluded(self) -> pd.DataFrame:
        s = self.summary
        ex = s[(s["diverged"] + s["failed"] + s["other"] + s["time_capped"]) > 0]
        return ex[["row", "gap", "diverged", "failed", "other", "time_capped"]].rename(
            columns={"time_capped": "stopped by max_time"})


def _stopped_when_solved(df: pd.DataFrame) -> pd.Series:
    """Per run: whether it ran with stop_when_solved=true (then `solved_at_step` says if it solved)."""
    if "cfg.stop_when_solved" not in df or "solved_at_step" not in df:
        return pd.Series(False, index=df.index)
    return df["cfg.stop_when_solved"].map(lambda v: v is True)


def _solved_flags(task: str, crit: Criterion, df: pd.DataFrame, summary: pd.DataFrame) -> pd.Series:
    """Per finished run: solved (bool), NaN where the criterion cannot be applied."""
    out = pd.Series(np.nan, index=df.index, dtype=object)
    for row, s in summary.groupby("row"):
        s = s.set_index("gap").sort_index()
        higher = bool(s["higher_is_better"].iloc[0])
        if crit.task_class is not None:
            thr = s["baseline"].astype(float).map(crit.task_class.solved_threshold).astype(float)
        else:
            best = s["mean"].max() if higher else s["mean"].min()
            base = s["baseline"].astype(float)
            improves = (best > base) if higher else (best < base)
            thr = (base + crit.relative * (best - base)).where(improves, np.nan)
        g = df[df["row"] == row]
        t = g["gap"].map(thr)
        ok = (g["score"] >= t) if higher else (g["score"] <= t)
        out.loc[g.index] = ok.where(t.notna() & g["score"].notna(), np.nan)
    stopping = _stopped_when_solved(df)
    if crit.task_class is not None and stopping.any():
        # a job that stopped when solved was judged on the validation split, as the horizon sweeper
        # judged it (job_solved); its test score is reported, not re-judged
        out.loc[stopping] = df.loc[stopping, "solved_at_step"].notna()
    return out


def _lr(df: pd.DataFrame) -> pd.Series:
    col = df["cfg.optim.lr"] if "cfg.optim.lr" in df else pd.Series(np.nan, index=df.index)
    return pd.to_numeric(col, errors="coerce")


def _select_lr(df: pd.DataFrame, higher: bool, per_gap: bool) -> tuple[pd.DataFrame, str]:
    """Keep each row's runs at its selected rate: the rate with the best mean validation score
    (mean over gaps of the per-gap mean over seeds; per gap with per_gap). Returns the runs kept and
    a sentence for the report ('' when there was no choice)."""
    df = df.assign(lr=_lr(df))
    if df.groupby("row")["lr"].nunique().max() <= 1:
        return df, ""
    if df["val_score"].isna().all():
        df = df.assign(row=[f"{r}@lr={conditions.show(lr)}" for r, lr in zip(df["row"], df["lr"])])
        return df, ("The store holds several learning rates but no validation scores (rows written before "
                    "`val_score` was recorded), so no rate was selected: each rate is its own row.")
    keys = ["row", "gap"] if per_gap else ["row"]
    best = lr_selection.best_rates(df, keys, higher)
    sel = set(best[keys + ["lr"]].itertuples(index=False, name=None))
    keep = [t in sel for t in df[keys + ["lr"]].itertuples(index=False, name=None)]
    grid = ", ".join(conditions.show(v) for v in sorted(df["lr"].dropna().unique()))
    return df[keep], (
        f"Learning rate selected per cell{' and gap' if per_gap else ''} from the rates run ({grid}) by the mean "
        f"validation {'score' if per_gap else 'score over gaps'} (`val_score`, the final validation split, never "
        "the test split; a tie broken by the lower validation loss); the test numbers are at the selected rate, "
        "shown beside each row, marked '(grid edge)' where it is the smallest or largest rate run.")


def tables(runs: pd.DataFrame, task: str, include_time_capped: bool = False, lr_per_gap: bool = False,
           n_boot: int = stats.BOOTSTRAP) -> list[TaskReport]:
    """Every table of one task: one per setting (conditions never mixed); several when the store
    holds several settings, each labelled by the keys that differ."""
    df = prepare(runs) if "condition" not in runs else runs.copy()
    df = df[df["task"] == task]
    if df.empty:
        raise ReportError(f"no runs of task {task}")
    cols = [c for c in df.columns if str(c).startswith(conditions.PREFIX)]
    keys_of = {}
    for cid, vals in zip(df["condition"], df[cols].itertuples(index=False, name=None)):
        if cid not in keys_of:
            keys_of[cid] = conditions.condition_keys(dict(zip(cols, vals)))
    setting_of = {cid: conditions.key_id(_setting_keys(k)) for cid, k in keys_of.items()}
    df = df.assign(setting=df["condition"].map(setting_of))
    settings = {setting_of[cid]: _setting_keys(k) for cid, k in keys_of.items()}
    setting_labels = conditions.differences(settings) if len(settings) > 1 else {s: "" for s in settings}
    reports = []
    for setting in sorted(settings, key=lambda s: (setting_labels[s], s)):
        reports.append(_table(df[df["setting"] == setting], task, setting, settings[setting], setting_labels[setting],
                              keys_of, include_time_capped, lr_per_gap, n_boot))
    return reports


def _table(df, task, setting, setting_keys, setting_label, keys_of, include_time_capped, lr_per_gap, n_boot):
    # rows: one per cell, or per cell variant when one cell ran with several settings of its own
    variant = {cid: conditions.key_id(_row_keys(k)) for cid, k in keys_of.items()}
    df = df.assign(variant=df["condition"].map(variant))
    labels = {}
    row_of = {}
    for cell, g in df.groupby("cell"):
        vs = {variant[c]: {k: v for k, v in _row_keys(keys_of[c]).items() if k != "cell.name"}
              for c in g["condition"].unique()}
        diff = conditions.differences(vs) if len(vs) > 1 else {v: "" for v in vs}
        for v, d in diff.items():
            row_of[(cell, v)] = f"{cell}[{d}]" if d else cell
            # a registered model's or an outside model's (cell.target) own title; an unknown name as it is
            labels[row_of[(cell, v)]] = cell_registry.title(cell) + (f" ({d.replace('cell.', '')})" if d else "") \
                if cell in cell_registry.names() or "." in cell else cell + (f" ({d})" if d else "")
    df = df.assign(row=[row_of[(c, v)] for c, v in zip(df["cell"], df["variant"])])
    if include_time_capped:
        df = df.assign(stopped_by=df["stopped_by"].where(~time_capped(df), "max_time (included)"))
    higher = bool(_one(df["higher_is_better"]))
    usable = (df["status"] == "finished") & ~time_capped(df)
    tried = df[usable].assign(lr=_lr(df[usable])).groupby("row")["lr"]
    lr_grid = {r: sorted(v.dropna().unique()) for r, v in tried}
    chosen, lr_note = _select_lr(df[usable], higher, lr_per_gap)
    if "@lr=" in "".join(chosen["row"]):  # no validation scores: each rate its own row
        for r in chosen["row"].unique():
            base = r.split("@lr=")[0]
            labels[r] = f"{labels.get(base, base)}, lr {r.split('@lr=')[1]}"
        df = df.assign(row=[f"{r}@lr={conditions.show(lr)}" for r, lr in
                            zip(df["row"], _lr(df))])
    # the newest finished run of each (condition, seed) counts; older repeats are dropped and counted
    chosen = chosen.sort_values("finished_at", na_position="first") if "finished_at" in chosen else chosen
    dup = chosen.duplicated(["condition", "cell", "gap", "seed"], keep="last")
    chosen = chosen[~dup]
    kept_lr = chosen.groupby(["row", "gap"])["lr"].first()
    # the table: the chosen runs, plus the runs that did not finish at the chosen (or only) condition
    sel_conditions = set(chosen["condition"])
    if lr_note and "@lr=" not in "".join(chosen["row"]):
        rest = df[~usable & df["condition"].isin(sel_conditions)]
    else:
        rest = df[~usable]
    summary = summarize(pd.concat([chosen, rest]), row="row")
    summary["lr"] = [kept_lr.get((r, g), np.nan) for r, g in zip(summary["row"], summary["gap"])]
    if summary["lr"].isna().all():
        lrs = _lr(df).dropna().unique()
        summary["lr"] = lrs[0] if len(lrs) == 1 else np.nan
    crit = criterion_for(task, _one(df["score_name"]), higher)
    chosen = chosen.assign(solved=_solved_flags(task, crit, chosen, summary))
    counts = chosen.dropna(subset=["solved"]).groupby(["row", "gap"])["solved"].agg(["sum", "count"])
    summary["solved"] = [int(counts.loc[(r, g), "sum"]) if (r, g) in counts.index else 0
                         for r, g in zip(summary["row"], summary["gap"])]
    summary["best"] = False
    for gap, s in summary.groupby("gap"):
        samples = {r: chosen[(chosen["row"] == r) & (chosen["gap"] == gap)]["score"] for r in s["row"]}
        top = stats.beats_all(samples, higher)
        base = s["baseline"].mean()
        if top is not None and (not np.isfinite(base) or stats.beyond_baseline(samples[top], base, higher)):
            summary.loc[(summary["gap"] == gap) & (summary["row"] == top), "best"] = True
    hz = stats.horizons(chosen.dropna(subset=["solved"]).assign(cell=chosen["row"]), n_boot=n_boot)
    hz = hz.rename(columns={"cell": "row"})
    return TaskReport(task, summary, hz, crit, setting, setting_label, setting_keys, lr_note, int(dup.sum()),
                      chosen, labels, lr_grid)


def task_report(runs: pd.DataFrame, task: str, **kw) -> TaskReport:
    """The task's table when the store holds one setting for it; several settings -> ReportError
    (use `tables`, which returns them all)."""
    reps = tables(runs, task, **kw)
    if len(reps) > 1:
        raise ReportError(f"task {task} has {len(reps)} conditions; use report.tables() to get each")
    return reps[0]


def _column_formats(rep: TaskReport) -> dict[int, str]:
    """One number format for every gap column of a table (one metric, one unit; the baseline row
    reads the same in each): fixed-point with the decimals that give the table's smallest mean three
    significant digits (at most 4), or scientific when a mean or the baseline is below 1e-3 (or at
    1e6 and up); the interval half-width takes the same format."""
    s = rep.summary
    vals = pd.concat([s["mean"], s["baseline"]]).abs()
    vals = vals[np.isfinite(vals) & (vals > 0)]
    if len(vals) and (vals.min() < 1e-3 or vals.max() >= 1e6):
        f = "sci"
    else:
        f = f"f{min(4, max(1, 2 - math.floor(math.log10(vals.min() if len(vals) else 1.0))))}"
    return {gap: f for gap in rep.gaps}


def _num(x: float, f: str) -> str:
    if x is None or not np.isfinite(x):
        return "nan"
    if f == "sci":
        return f"{x:.1e}"
    return f"{x:.{int(f[1:])}f}"


def _entry_parts(r, f: str) -> tuple[str, str]:
    """('mean', 'half') in the column's format; half '' with n < 2."""
    if r["n"] == 0:
        return "", ""
    return _num(r["mean"], f), (_num(r["half"], f) if r["n"] > 1 and np.isfinite(r["half"]) else "")


def _grid(rep: TaskReport, text_fn, base_fn):
    fmts = _column_formats(rep)
    s = rep.summary.set_index(["row", "gap"])
    rows = []
    for row in rep.rows:
        line = [row]
        for gap in rep.gaps:
            if (row, gap) in s.index:
                r = s.loc[(row, gap)]
                line.append(text_fn(r, fmts[gap]))
            else:
                line.append(text_fn(None, fmts[gap]))
        rows.append(line)
    bases = rep.baselines()
    rows.append(base_fn([(bases.get(g, np.nan), fmts[g]) for g in rep.gaps]))
    return [str(g) for g in rep.gaps], rows


def entry(mean: float, half: float, n: int, solved: str = "") -> str:
    """`mean ± half (n)` (half: 95% interval half-width); n = 1 has no ±; n = 0 is an em dash."""
    if n == 0:
        return "—"
    if n == 1 or not np.isfinite(half):
        return f"{fmt(mean)} (n=1{solved})"
    return f"{fmt(mean)} ± {fmt(_denoise(mean, half), 2)} (n={n}{solved})"


def markdown_table(rep: TaskReport) -> str:
    def text_fn(r, f):
        if r is None or r["n"] == 0:
            return "—"
        m, h = _entry_parts(r, f)
        solved = f", solved {int(r['solved'])}/{int(r['n'])}" if rep.has_solved else ""
        e = f"{m} ± {h} (n={int(r['n'])}{solved})" if h else f"{m} (n={int(r['n'])}{solved})"
        return f"**{e}**" if r["best"] else e
    gaps, rows = _grid(rep, text_fn, lambda b: ["*baseline*"] + [f"*{_num(v, f)}*" for v, f in b])
    frame = pd.DataFrame([r[1:] for r in rows], index=[rep.label(r[0]) if i < len(rows) - 1 else r[0]
                                                       for i, r in enumerate(rows)],
                         columns=[f"gap {g}" for g in gaps])
    if rep.shows_lr:
        frame.insert(0, "lr", [rep.lr_text(r) for r in rep.rows] + [""])
    frame.index.name = "cell"
    return frame.to_markdown(colalign=["left"] * (1 + rep.shows_lr) + ["right"] * len(gaps))


def _tex_num(s: str) -> str:
    if "e" in s:
        mant, exp = s.split("e")
        return f"{mant}{{\\times}}10^{{{int(exp)}}}"
    return s


def _tex_entry(r, f: str) -> str:
    """Math-mode `mean_{±half}`; in scientific notation the half shares the mean's power of ten."""
    m, h = _entry_parts(r, f)
    if f != "sci":
        return f"{m}_{{\\pm {h}}}" if h else m
    mant, exp = m.split("e")
    if not h:
        return f"{mant}{{\\times}}10^{{{int(exp)}}}"
    return f"{mant}_{{\\pm {fmt(float(r['half']) / 10 ** int(exp), 2)}}}{{\\times}}10^{{{int(exp)}}}"


def latex_table(rep: TaskReport, per_block: int | None = None) -> str:
    """A booktabs table that fits one column of a two-column article: entries `mean_{±half}`, the
    solved count under each mean, gaps in balanced blocks of at most 3 (2 in scientific notation)."""
    fmts = _column_formats(rep)
    s = rep.summary.set_index(["row", "gap"])
    per_block = per_block or (2 if "sci" in fmts.values() else 3)
    gaps = rep.gaps
    n_blocks = math.ceil(len(gaps) / per_block)
    bounds = np.linspace(0, len(gaps), n_blocks + 1).round().astype(int)  # balanced: 4 gaps -> 2 + 2
    blocks = [gaps[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    k = max(len(b) for b in blocks)
    label = f"tab:gapbench-{re.sub('[^A-Za-z0-9]+', '-', rep.task)}-{rep.setting[:6]}"
    lr_col = rep.shows_lr
    cols = "l" + ("r" if lr_col else "") + "c" * k
    first = 2 + lr_col
    lines = [
        "% generated by python -m gapbench.report; needs \\usepackage{booktabs}",
        "\\begin{table}[t]", "\\centering", "\\footnotesize", "\\setlength{\\tabcolsep}{3pt}",
        f"\\caption{{{tex_escape(rep.caption())}}}",
        f"\\label{{{label}}}",
        f"\\begin{{tabular}}{{{cols}}}", "\\toprule",
    ]
    bases = rep.baselines()
    for bi, block in enumerate(blocks):
        if bi:
            lines.append("\\midrule")
        pad = [""] * (k - len(block))
        lines += [f" & {'& ' if lr_col else ''}\\multicolumn{{{len(block)}}}{{c}}{{gap}} \\\\",
                  f"\\cmidrule(lr){{{first}-{first + len(block) - 1}}}",
                  "Cell & " + ("lr & " if lr_col else "") + " & ".join([str(g) for g in block] + pad) + " \\\\",
                  "\\midrule"]
        for row in rep.rows:
            cells, solved = [], []
            for gap in block:
                r = s.loc[(row, gap)] if (row, gap) in s.index else None
                if r is None or r["n"] == 0:
                    cells.append("---")
                    solved.append("")
                    continue
                n = f"^{{({int(r['n'])})}}" if int(r["n"]) != rep.summary["n"].max() else ""
                body = f"${{{_tex_entry(r, fmts[gap])}}}{n}$"
                cells.append(f"\\bfseries\\boldmath {body}" if r["best"] else body)
                solved.append(f"{int(r['solved'])}/{int(r['n'])}")
            lr = ""
            if lr_col:
                lr = tex_escape(rep.lr_text(row)) + " & "
            lines.append(tex_escape(rep.label(row)) + " & " + lr + " & ".join(cells + pad) + " \\\\")
            if rep.has_solved:
                lines.append("& " + ("& " if lr_col else "") + " & ".join(
                    [f"\\scriptsize {x}" if x else "" for x in solved] + pad) + " \\\\[2pt]")
        lines += ["\\midrule", "\\textit{baseline} & " + ("& " if lr_col else "")
                  + " & ".join([f"${_tex_num(_num(bases.get(g, np.nan), fmts[g]))}$" for g in block] + pad) + " \\\\"]
    n_max = int(rep.summary["n"].max())
    lines += ["\\bottomrule", "\\end{tabular}",
              f"\\par\\smallskip\\scriptsize $n = {n_max}$ seeds per entry unless a superscript $(n)$ says "
              "otherwise" + ("; below each entry: seeds solved / seeds." if rep.has_solved else "."),
              "\\end{table}", ""]
    return "\n".join(lines)


def horizon_markdown(rep: TaskReport) -> str:
    h = rep.horizons
    if h.empty:
        return "(no finished runs)\n"
    h = h.set_index("row").loc[[r for r in rep.rows if r in set(h["row"])]].reset_index()  # registry order
    per_gap = [", ".join(f"{g}: {a}/{b}" for g, (a, b) in x.solved.items()) for x in h["horizon"]]
    frame = pd.DataFrame({"memory horizon (gap) [95% CI]": h["text"].to_numpy(), "seeds solved per gap": per_gap},
                         index=pd.Index([rep.label(r) for r in h["row"]], name="cell"))
    return (f"Memory horizon — the gap at which the cell's probability of solving the task "
            f"({rep.criterion.text}) falls through 0.5: a logistic fit of solved / not solved in log(gap) over "
            f"all seeds and gaps, with a 95% percentile bootstrap interval over seeds ({stats.BOOTSTRAP} "
            "resamples; never narrower than the measured gaps either side). '≥ G': the fit stays ≥ 0.5 up to "
            "the largest gap G measured; '< G': below 0.5 already at the smallest gap G.\n\n"
            + frame.to_markdown(stralign="left") + "\n")


def excluded_markdown(rep: TaskReport) -> str:
    ex = rep.excluded()
    if ex.empty:
        return ""
    ex = ex.assign(row=[rep.label(r) for r in ex["row"]]).rename(columns={"row": "cell"})
    return ("Runs not in the means (diverged, failed, stopped by the wall-clock cap `trainer.max_time` before "
            "`trainer.max_steps`, or other status):\n\n" + ex.to_markdown(index=False) + "\n")


# -- plots ---------------------------------------------------------------------------------------
def _plain_ticks():
    """Tick labels as written: 1, 10, 100, 0.5 (not 1.0, 10.0 or 10^2)."""
    from matplotlib.ticker import FuncFormatter
    return FuncFormatter(lambda value, _pos: f"{value:g}")


def _figure(figsize=(7.5, 4.8), panels: int | None = None):
    """A Figure drawn by the Agg canvas, without pyplot: no global backend switch, nothing to close.
    Returns (fig, ax), or (fig, [ax, ...]) with `panels` side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize, dpi=110)
    FigureCanvasAgg(fig)
    return fig, (fig.subplots() if panels is None else fig.subplots(1, panels, squeeze=False)[0])


def _colors(cells: list[str]) -> dict[str, Any]:
    import matplotlib
    if len(cells) > 10:  # tab10 would repeat colours within one plot
        cmap = matplotlib.colormaps["tab20"]
        return {c: cmap(i % 20) for i, c in enumerate(cells)}
    cmap = matplotlib.colormaps["tab10"]
    order = cell_registry.names()
    known = {c: cmap(i % 10) for i, c in enumerate(order)}
    extra = [c for c in cells if c not in known]
    return {**known, **{c: cmap((len(order) + i) % 10) for i, c in enumerate(extra)}}


def _row_colors(rep: TaskReport, cells: list[str] | None = None) -> dict[str, Any]:
    """A colour per row; `cells`: the cells of every panel of one figure, so a model keeps its colour."""
    if len(rep.rows) == len(rep.cells):
        by_cell = _colors(cells or rep.cells)
        cell = rep.summary.drop_duplicates("row").set_index("row")["cell"]
        return {r: by_cell[cell[r]] for r in rep.rows}
    import matplotlib
    cmap = matplotlib.colormaps["tab10"]
    return {r: cmap(i % 10) for i, r in enumerate(rep.rows)}


def degradation_figure(rep: TaskReport):
    """Score vs gap per row: mean over seeds, band = its 95% t-interval; each crossed memory horizon
    as a dotted vertical line with its bootstrap interval shaded along the bottom."""
    from matplotlib.ticker import NullFormatter
    from matplotlib.transforms import blended_transform_factory
    fig, ax = _figure()
    colors = _row_colors(rep)
    s = rep.summary[rep.summary["n"] > 0]
    hz = rep.horizons.set_index("row") if len(rep.horizons) else pd.DataFrame()
    gaps = rep.gaps
    strip = blended_transform_factory(ax.transData, ax.transAxes)
    for i, row in enumerate(rep.rows):
        c = s[s["row"] == row].sort_values("gap")
        if c.empty:
            continue
        label = rep.label(row)
        if row in hz.index:
            label += f" (horizon {hz.loc[row, 'text']})"
        if rep.shows_lr:
            label += f", lr {rep.lr_text(row)}"
        ax.plot(c["gap"], c["mean"], "o-", color=colors[row], label=label, lw=1.6, ms=4)
        band = c.dropna(subset=["lo", "hi"])
        ax.fill_between(band["gap"], band["lo"], band["hi"], color=colors[row], alpha=0.15, lw=0)
        if row in hz.index and hz.loc[row, "kind"] == "crossed":
            h = hz.loc[row]
            ax.axvline(h["estimate"], color=colors[row], ls=":", lw=1.3)
            lo = h["lo"] if np.isfinite(h["lo"]) and h["lo"] > 0 else gaps[0]
            hi = h["hi"] if np.isfinite(h["hi"]) else gaps[-1]
            y = 0.02 + 0.025 * i
            ax.plot([lo, hi], [y, y], color=colors[row], lw=3, alpha=0.6, transform=strip, solid_capstyle="butt")
            ax.plot([h["estimate"]], [y], "|", color=colors[row], ms=8, transform=strip)
    bases = pd.Series(rep.baselines()).sort_index().dropna()
    if len(bases):
        if np.allclose(bases.to_numpy(), bases.iloc[0]):
            ax.axhline(bases.iloc[0], color="0.3", ls="--", lw=1.2, label=f"memoryless baseline {fmt(bases.iloc[0])}")
        else:
            ax.plot(bases.index, bases.to_numpy(), "--", color="0.3", lw=1.2, label="memoryless baseline")
    if rep.criterion.task_class is not None and len(bases):
        solved = bases.map(rep.criterion.task_class.solved_threshold).astype(float)
        if np.allclose(solved.to_numpy(), solved.iloc[0]):
            ax.axhline(solved.iloc[0], color="0.6", ls="-.", lw=1, label=f"solved: {rep.criterion.text}")
        else:
            ax.plot(solved.index, solved.to_numpy(), "-.", color="0.6", lw=1, label=f"solved: {rep.criterion.text}")
    if min(gaps) > 0:
        ax.set_xscale("log")
    else:  # gap 0 (seq_mnist's undelayed task) has no logarithm: linear up to 1, logarithmic beyond
        ax.set_xscale("symlog", linthresh=1)
    vals = pd.concat([s["mean"], bases]).dropna()
    if rep.criterion.task_class is not None and len(bases):
        vals = pd.concat([vals, bases.map(rep.criterion.task_class.solved_threshold).astype(float)]).dropna()
    if not rep.higher and len(vals) and (vals > 0).all() and vals.max() / vals.min() > 100:
        ax.set_yscale("log")  # a t band reaching below 0 is cut at the bottom of the plot
        ax.set_ylim(bottom=vals.min() / 3)
    elif len(vals):  # a wide t band (few seeds) is cut at the plot's edge rather than squash the means
        lo, hi = float(vals.min()), float(vals.max())
        pad = 0.15 * (hi - lo or abs(hi) or 1.0)
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_xticks(gaps)
    ax.xaxis.set_major_formatter(_plain_ticks())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(textwrap.fill(f"gap (log scale): {gap_meaning(rep.task)}", 110), fontsize=9)
    ax.set_ylabel(f"{rep.metric} ({arrow(rep.higher)})")
    cond = f" [{rep.setting_label}]" if rep.setting_label else ""
    ax.set_title(f"{rep.title}{cond}, {rep.budget}: {rep.metric} vs gap\nline = mean over seeds, band = 95% t-interval; "
                 "dotted = memory horizon, bar at the bottom = its 95% bootstrap interval", fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def gradients_figure(curves: pd.DataFrame, rep: TaskReport):
    """‖∂L/∂h_t‖ against steps back from the end for one table (one condition per line: the table's
    runs, a line per row), at the largest gap with curves, at each run's latest recorded train step,
    averaged over seeds; None when there is nothing to draw."""
    task = rep.task
    c = curves[curves["task"] == task].copy()
    if rep.runs is not None and "run_id" in rep.runs:
        row_of = dict(zip(rep.runs["run_id"], rep.runs["row"]))
        c = c[c["run_id"].isin(row_of)]
        c["row"] = c["run_id"].map(row_of)
    else:
        c["row"] = c["cell"]
    for col in ("gap", "train_step", "t", "grad_norm"):
        c[col] = pd.to_numeric(c[col], errors="coerce")
    c = c.dropna(subset=["gap", "train_step", "t", "grad_norm"])
    if c.empty:
        return None
    gap = int(c["gap"].max())
    c = c[c["gap"] == gap]
    c = c[c["train_step"] == c.groupby("run_id")["train_step"].transform("max")]
    c = c.assign(back=c.groupby("run_id")["t"].transform("max") - c["t"])
    c = c[c["grad_norm"] > 0]
    if c.empty:
        return None
    fig, ax = _figure()
    colors = _row_colors(rep)
    steps = sorted(int(s) for s in c["train_step"].unique())
    for row in [r for r in rep.rows if r in set(c["row"])] + sorted(set(c["row"]) - set(rep.rows)):
        g = c[c["row"] == row].groupby("back")["grad_norm"].agg(["mean", "min", "max"])
        n = c[c["row"] == row]["run_id"].nunique()
        of_x = "wrt" in c and (c.loc[c["row"] == row, "wrt"] == "x_t").any()  # no state: the probe's ‖∂L/∂x_t‖
        color = colors.get(row, "0.5")
        ax.plot(g.index, g["mean"], color=color, lw=1.5,
                label=f"{rep.label(row)} ({n} seed{'s' * (n > 1)}){', ‖∂L/∂x_t‖' if of_x else ''}")
        ax.fill_between(g.index, g["min"], g["max"], color=color, alpha=0.12, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("steps back from the end of the sequence (T_len - 1 - t)")
    ax.set_ylabel("‖∂L/∂h_t‖ (mean over batch), log scale")
    cond = f" [{rep.setting_label}]" if rep.setting_label else ""
    ax.set_title(f"{task_title(task)}{cond}, {rep.budget}, gap {gap}: gradient reaching back in time\n"
                 f"at train step {', '.join(map(str, steps[:4]))}{'…' if len(steps) > 4 else ''} (each run's last "
                 "probe); line = mean, band = min–max over seeds", fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def steps_to_solve_figure(rep: TaskReport):
    """Steps to solve against gap (jobs that recorded `solved_at_step`): one point per solved job,
    a cross at the budget for each job that did not solve; the line joins per-gap medians of the
    solved jobs. None when no job of the table recorded a solved step."""
    from matplotlib.ticker import NullFormatter
    runs = rep.runs
    if runs is None or "solved_at_step" not in runs or runs["solved_at_step"].notna().sum() == 0:
        return None
    fig, ax = _figure(figsize=(10, 4.8))  # room for the legend on the right
    colors = _row_colors(rep)
    budget = pd.to_numeric(runs.get("cfg.trainer.max_steps"), errors="coerce")
    for row in rep.rows:
        g = runs[runs["row"] == row]
        if g.empty:
            continue
        done = g[g["solved_at_step"].notna()]
        miss = g[g["solved_at_step"].isna()]
        ax.plot(done["gap"], done["solved_at_step"], "o", color=colors[row], ms=4, alpha=0.7,
                label=f"{rep.label(row)} ({len(done)}/{len(g)} jobs solved)")
        if len(miss):
            ax.plot(miss["gap"], budget[miss.index], "x", color=colors[row], ms=5, alpha=0.7)
        med = done.groupby("gap")["solved_at_step"].median()
        if len(med) > 1:
            ax.plot(med.index, med.to_numpy(), "-", color=colors[row], lw=1.2, alpha=0.8)
    if budget.notna().any() and budget.nunique() == 1:
        ax.axhline(budget.dropna().iloc[0], color="0.4", ls="--", lw=1, label=f"budget {int(budget.dropna().iloc[0])} steps")
    ax.set_xscale("log" if runs["gap"].min() > 0 else "symlog")
    ax.xaxis.set_major_formatter(_plain_ticks())
    ax.xaxis.set_minor_formatter(NullFormatter())
    if ax.get_yscale() == "log":
        ax.yaxis.set_major_formatter(_plain_ticks())
    ax.set_xlabel(textwrap.fill(f"gap (log scale): {gap_meaning(rep.task)}", 110), fontsize=9)
    ax.set_ylabel("training steps to solve (first validation meeting the criterion)")
    cond = f" [{rep.setting_label}]" if rep.setting_label else ""
    ax.set_title(f"{rep.title}{cond}, {rep.budget}: steps to solve vs gap ({rep.criterion.text})\n"
                 "dot = a job that solved, x = one that did not (drawn at its budget); line = median of the solved",
                 fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: the points fill the axes
    fig.tight_layout()
    return fig


def horizons_figure(reps: list[TaskReport]):
    """Each model's memory horizon with its 95% interval, one panel per table that has horizons;
    a censored horizon is drawn as an arrow from its bound. None when no table has one."""
    reps = [r for r in reps if r.has_solved and len(r.horizons) and (r.horizons["kind"] != "none").any()]
    if not reps:
        return None
    rows = max(len(r.horizons) for r in reps)
    cells = cell_order({c for r in reps for c in r.cells})
    fig, axes = _figure(figsize=(max(7.5, 5.2 * len(reps)), 1.3 + 0.36 * rows), panels=len(reps))
    for ax, rep in zip(axes, reps):
        colors = _row_colors(rep, cells)
        h = rep.horizons.set_index("row")
        order = [r for r in rep.rows if r in h.index][::-1]
        for y, row in enumerate(order):
            x = h.loc[row]
            c = colors[row]
            if x["kind"] == "crossed":
                lo = x["lo"] if np.isfinite(x["lo"]) and x["lo"] > 0 else x["min_gap"]
                hi = x["hi"] if np.isfinite(x["hi"]) else x["max_gap"]
                ax.plot([lo, hi], [y, y], color=c, lw=2.5, alpha=0.5, solid_capstyle="butt")
                ax.plot([x["estimate"]], [y], "o", color=c, ms=6)
            elif x["kind"] == "above":
                ax.plot([x["max_gap"]], [y], ">", color=c, ms=8)
            elif x["kind"] == "below":
                ax.plot([x["min_gap"]], [y], "<", color=c, ms=8)
            ax.annotate(x["text"], (1.01, y), xycoords=("axes fraction", "data"), fontsize=7, va="center")
        ax.set_yticks(range(len(order)), [rep.label(r) for r in order], fontsize=8)
        ax.set_ylim(-0.6, len(order) - 0.4)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(_plain_ticks())
        cond = f" [{rep.setting_label}]" if rep.setting_label else ""
        ax.set_title(f"{rep.title}{cond}, {rep.budget}\n{rep.criterion.text}", fontsize=8)
        ax.set_xlabel("memory horizon (gap), log scale", fontsize=8)
        ax.grid(alpha=0.3, axis="x", which="both")
    fig.suptitle("Memory horizon per model: dot = estimate, bar = 95% bootstrap interval over seeds,\n"
                 "arrow = beyond the gaps run (its bound on the right)", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.86, 1))  # room on the right for the printed horizons
    return fig


def _save(fig, path: Path) -> Path:
    fig.savefig(path)
    return path


def _save_both(fig, path: Path) -> list[Path]:
    """PNG for Markdown and W&B, PDF (vector) for the paper."""
    return [_save(fig, path), _save(fig, path.with_suffix(".pdf"))]


def _figure_array(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


# -- published numbers ---------------------------------------------------------------------------
def load_published(path: Path | str = PUBLISHED_CSV) -> pd.DataFrame:
    pub = pd.read_csv(path)
    missing = {"task", "gap", "cell", "metric", "value", "source"} - set(pub.columns)
    if missing:
        raise ReportError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    return pub


def our_column(runs: pd.DataFrame, metric: str) -> str | None:
    """Our column for a published metric: test/<metric>, else score / test_loss where they mean it."""
    if f"test/{metric}" in runs:
        return f"test/{metric}"
    if metric == "loss" and "test_loss" in runs:
        return "test_loss"
    if "score_name" in runs and (runs["score_name"] == metric).any():
        return "score"
    return None


def published_comparison(runs: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """Each published row with ours beside it: same task, gap and cell, the metric mapped to our column."""
    df = prepare(runs) if len(runs) else runs
    rows = []
    for p in published.itertuples():
        col = our_column(df, p.metric) if len(df) else None
        match = df[(df["task"] == p.task) & (df["gap"] == int(p.gap)) & (df["cell"] == p.cell)] if len(df) else df
        ok = match[match["status"] == "finished"] if len(match) else match
        vals = pd.to_numeric(ok[col], errors="coerce").dropna() if col and len(ok) else pd.Series(dtype=float)
        if len(vals):  # one entry per condition, never pooled
            parts = []
            for _, v in vals.groupby(ok.loc[vals.index, "condition"], sort=False):
                ci = stats.t_interval(v)
                parts.append(entry(ci.mean, ci.half, ci.n))
            ours = "; ".join(parts)
        elif len(ok):  # finished runs, but without that metric
            ours = "not recorded"
        elif len(match):
            ours = f"not run ({len(match)} diverged/failed)"
        else:
            ours = "not run"
        rows.append({"task": p.task, "gap": int(p.gap), "cell": p.cell, "metric": p.metric,
                     "our column": col or "—", "published": fmt(float(p.value)), "ours": ours,
                     "ours_mean": vals.mean() if len(vals) else np.nan, "ours_n": len(vals),
                     "source": p.source})
    return pd.DataFrame(rows)


def published_markdown(cmp: pd.DataFrame, published: pd.DataFrame) -> str:
    tasks, cells = task_order(cmp["task"]), cell_order(cmp["cell"])
    cmp = cmp.assign(_t=cmp["task"].map(tasks.index), _c=cmp["cell"].map(cells.index)).sort_values(
        ["_t", "gap", "_c"], kind="stable")  # registry order, as every table
    show = cmp[["task", "gap", "cell", "metric", "our column", "published", "ours"]]
    sources = "; ".join(sorted(published["source"].dropna().unique()))
    notes = ""
    if "note" in published:
        n = published.dropna(subset=["note"]).drop_duplicates("note")
        notes = "".join(f"- {r.task} gap {r.gap}: {r.note}\n" for r in n.itertuples())
    sizes = ""
    if "model_size" in published:
        s = published.drop_duplicates("task")
        sizes = ", ".join(f"{r.task} ≈{r.model_size}" for r in s.itertuples())
    return ("# Published numbers side by side\n\n"
            f"Source: {sources}. Ours: mean ± 95% t-interval half-width (n finished seeds) of the column named, "
            "one entry per condition (separated by ';'), over our runs "
            "with the same task, gap and cell; 'not run' where there are none. "
            + (f"The paper tuned each model to a fixed parameter budget ({sizes}) and trained to convergence; "
               if sizes else "")
            + "Our runs use the settings stored in "
            "their `cfg.*` columns (hidden size, steps), so compare the order of magnitude, not the digits.\n\n"
            + show.to_markdown(index=False) + "\n\n" + (f"Notes:\n\n{notes}" if notes else ""))


# -- index ---------------------------------------------------------------------------------------
def _date_range(df: pd.DataFrame) -> str:
    def times(col: str) -> pd.Series:  # a store whose rows lack the column (hand-made ones) has no dates
        return pd.to_datetime(df[col], utc=True, errors="coerce").dropna() if col in df else pd.Series(dtype=object)

    start, end = times("started_at"), times("finished_at")
    if start.empty and end.empty:
        return "unknown"
    lo = (start if len(start) else end).min()
    hi = (end if len(end) else start).max()
    return f"{lo:%Y-%m-%d %H:%M} – {hi:%Y-%m-%d %H:%M} UTC"


def _budget(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    keys = ["task", "sweep_id"] if "sweep_id" in df else ["task"]
    for key, g in df.groupby(keys, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        planned = (pd.to_numeric(g["cfg.trainer.max_steps"], errors="coerce").dropna().astype(int).unique()
                   if "cfg.trainer.max_steps" in g else [])
        steps = g["steps"].dropna()
        rows.append({"task": key[0], "sweep_id": key[1] if len(key) > 1 and pd.notna(key[1]) else "—",
                     "runs": len(g), "finished": int((g["status"] == "finished").sum()),
                     "diverged": int((g["status"] == "diverged").sum()), "failed": int((g["status"] == "failed").sum()),
                     "cells": len(g["cell"].unique()), "gaps": ", ".join(map(str, sorted(g["gap"].unique()))),
                     "seeds": len(g["seed"].unique()),
                     "max_steps": ", ".join(map(str, sorted(planned))) or "?",
                     "hidden size": ", ".join(map(str, sorted(pd.to_numeric(g["cfg.cell.hidden_size"], errors="coerce")
                                                             .dropna().astype(int).unique())))
                     if "cfg.cell.hidden_size" in g else "?",
                     "steps run": (f"{int(steps.min())}–{int(steps.max())}" if len(steps) and steps.min() != steps.max()
                                   else f"{int(steps.min())}" if len(steps) else "?"),
                     "wall (h)": f"{g['wall_s'].sum() / 3600:.2f}"})
    out = pd.DataFrame(rows)
    order = task_order(out["task"]) if len(out) else []
    return out.iloc[sorted(range(len(out)), key=lambda i: order.index(out["task"].iloc[i]))] if len(out) else out


def index_markdown(df: pd.DataFrame, files: dict[str, list[str]], command: str, extra: list[str],
                   corrupt: list[str], notes: list[str] = ()) -> str:
    dev = df["device"].fillna("unknown").value_counts() if "device" in df else pd.Series(dtype=int)
    devices = ", ".join(f"{d} ({n} run{'s' * (n > 1)})" for d, n in dev.items()) or "unknown"
    torch_v = ", ".join(sorted(df["torch_version"].dropna().astype(str).unique())) if "torch_version" in df else ""
    status = df["status"].value_counts()
    counts = ", ".join(f"{n} {s}" for s, n in status.items())
    lines = [
        "# gapbench report", "",
        f"Produced by `{command}` at {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.", "",
        f"- **Runs summarised:** {len(df)} ({counts}); only finished runs enter means, horizons and "
        "comparisons, and only runs of one condition (identical configs but for the seed) are aggregated.",
        f"- **Dates of the runs:** {_date_range(df)}.",
        f"- **Hardware:** {devices}" + (f"; torch {torch_v}" if torch_v else "") + ".",
        "- **Budget:** steps per run as configured (`cfg.trainer.max_steps`) and as run (`steps`), per sweep "
        "below.",
    ]
    lines += [f"- **Note:** {n}." for n in notes]
    if corrupt:
        lines.append(f"- **Skipped:** {len(corrupt)} unusable record(s) (torn, or missing what a row needs): {', '.join(corrupt[:5])}"
                     + (" …" if len(corrupt) > 5 else ""))
    lines += ["", _budget(df).to_markdown(index=False), "", "## Tasks", ""]
    for task, names in files.items():
        lines.append(f"- **{task_title(task)}** (`{task}`): " + " · ".join(f"[{n}]({n})" for n in names))
    lines += ["", "## Also", ""] + [f"- [{n}]({n})" for n in extra]
    lines += ["", "How to read these files and the memory-horizon criteria: `docs/report.md` in the gapbench "
              "repository.", ""]
    return "\n".join(lines)


# -- the whole report ----------------------------------------------------------------------------
def write_report(runs: pd.DataFrame, out_dir: Path | str, curves: pd.DataFrame | None = None,
                 published: pd.DataFrame | None = None, command: str = "python -m gapbench.report",
                 include_time_capped: bool = False, lr_per_gap: bool = False) -> list[Path]:
    """Write every file of the report into out_dir; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df = prepare(runs)
    if df.empty:
        raise ReportError("no runs to report")
    written: list[Path] = []
    files: dict[str, list[str]] = {}
    notes: list[str] = []
    if curves is not None and len(curves) and "run_id" in curves and "run_id" in df:
        curves = curves[curves["run_id"].isin(df.loc[df["status"] == "finished", "run_id"])]

    def put(name: str, text: str) -> None:
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)

    def figure(fig, stem: str, alt: str, names: list[str], caption: str) -> list[str]:
        """Save fig as stem.png and stem.pdf, list both in names; its markdown lines ([] without one)."""
        if fig is None:
            return []
        written.extend(_save_both(fig, out / f"{stem}.png"))
        names += [f"{stem}.png", f"{stem}.pdf"]
        return [f"![{alt}]({stem}.png)", "", caption, ""]

    all_reps: list[TaskReport] = []
    for task in task_order(df["task"]):
        reps = tables(df, task, include_time_capped=include_time_capped, lr_per_gap=lr_per_gap)
        names = [f"{task}.md"]
        md = [f"# {reps[0].title} (`{task}`)", ""]
        if len(reps) > 1:
            md += [f"The store holds **{len(reps)} conditions** for this task (runs differing in more than the "
                   "seed, the cell and the gap); each has its own table, labelled by the settings that differ. "
                   "Nothing is averaged across them.", ""]
            notes.append(f"{task_title(task)}: {len(reps)} conditions, reported apart")
        capped = int(time_capped(df[df["task"] == task]).sum())
        if capped:
            md += [f"**Note:** {capped} finished run(s) were stopped by the wall-clock cap `trainer.max_time` before "
                   "`trainer.max_steps`; " + ("they are included (`--include-time-capped`)." if include_time_capped
                                              else "they trained for fewer steps than their condition says, so they "
                                              "are left out of the tables (`--include-time-capped` keeps them)."),
                   ""]
            notes.append(f"{task_title(task)}: {capped} run(s) stopped by max_time "
                         + ("included" if include_time_capped else "left out"))
        for rep in reps:
            stem = rep.slug
            if len(reps) > 1:
                md += [f"## Condition: {rep.setting_label}", ""]
            if rep.lr_note:
                md += [f"**Learning rate.** {rep.lr_note}", ""]
            task_cls = task_registry.find(task)
            if task_cls is not None and rep.runs is not None and len(rep.runs):
                for note in task_cls.report_notes(rep.runs.iloc[0].to_dict()):
                    md += [f"**Note:** {note}", ""]
            if rep.duplicates:
                md += [f"**Note:** {rep.duplicates} finished run(s) repeat a (condition, seed) already in the table "
                       "(the same configuration run again); only the newest of each counts.", ""]
            fig = degradation_figure(rep)
            written += _save_both(fig, out / f"{stem}_degradation.png")
            put(f"{stem}.tex", latex_table(rep))
            put(f"{stem}_horizon.md", f"# {rep.title}{f' [{rep.setting_label}]' if rep.setting_label else ''}, "
                                      f"{rep.budget}: memory horizon\n\n" + horizon_markdown(rep))
            names += [f"{stem}.tex", f"{stem}_degradation.png", f"{stem}_degradation.pdf", f"{stem}_horizon.md"]
            all_reps.append(rep)
            md += [f"**Table.** {rep.caption()}", "", markdown_table(rep), "", excluded_markdown(rep),
                   "### Memory horizon", "", horizon_markdown(rep),
                   f"![score vs gap]({stem}_degradation.png)", "",
                   f"Score vs gap: mean over seeds, band = {BAND}, dashed = memoryless baseline, dotted vertical line "
                   f"= memory horizon, bar along the bottom = its 95% bootstrap interval. Vector: "
                   f"[{stem}_degradation.pdf]({stem}_degradation.pdf); LaTeX: [{stem}.tex]({stem}.tex).", ""]
            md += figure(steps_to_solve_figure(rep), f"{stem}_steps_to_solve", "steps to solve vs gap", names,
                         "Steps to solve: the first validation (every `trainer.val_check_interval` steps) at which "
                         "a job met the criterion; a second measure of difficulty beside the horizon.")
            grad = gradients_figure(curves, rep) if curves is not None and len(curves) else None
            md += figure(grad, f"{stem}_gradients", "gradient vs distance", names,
                         "‖∂L/∂h_t‖ against steps back from the end (log y), this table's runs only: a straight "
                         "falling line is exponential decay, the vanishing gradient.")
        put(f"{task}.md", "\n".join(md))
        files[task] = names

    extra: list[str] = []
    figure(horizons_figure(all_reps), "horizons", "memory horizons", extra, "")
    if published is not None and len(published):
        put("published.md", published_markdown(published_comparison(df, published), published))
        extra.append("published.md")
    duplicates = list(runs.attrs.get("duplicates", []))
    if duplicates:  # a copied row file: read once (gapbench.results)
        notes = [*notes, f"{len(duplicates)} duplicate row file(s) of runs stored twice, read once: "
                         f"{', '.join(duplicates[:5])}" + (" …" if len(duplicates) > 5 else "")]
    put("index.md", index_markdown(df, files, command, extra, list(runs.attrs.get("corrupt", [])), notes))
    return written


# -- Weights & Biases ----------------------------------------------------------------------------
@contextlib.contextmanager
def _wandb_env(results_dir: Path):
    """W&B's dirs under <results>/wandb for the duration (restored after: the caller's env is untouched)."""
    base = results_dir / "wandb"
    new = {"WANDB_DIR": base, "WANDB_CACHE_DIR": base / "cache", "WANDB_CONFIG_DIR": base / "config",
           "WANDB_DATA_DIR": base / "data", "WANDB_ARTIFACT_DIR": base / "artifacts"}
    old = {k: os.environ.get(k) for k in new}
    for k, v in new.items():
        Path(v).mkdir(parents=True, exist_ok=True)
        os.environ[k] = str(v)
    try:
        yield base
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def log_wandb(runs: pd.DataFrame, results_dir: Path | str, mode: str = "offline", project: str = "gapbench",
              entity: str | None = None) -> list[str]:
    """One W&B run per sweep_id (job_type='report', group=sweep_id): the score, horizon and
    published tables as wandb.Table, the score-vs-gap plots as wandb.Image and as an interactive
    line chart per task (wandb.plot.line_series, one line per cell). Returns the run dirs.
    A sweep's report run has a fixed id (from the sweep id and project): rendering the report again
    updates the same W&B run (offline: `wandb sync` resumes it) instead of adding one. W&B's console
    lines are silenced as in a job (gapbench.quiet)."""
    import hashlib

    import wandb

    from gapbench.quiet import quiet
    quiet(False, wandb=True)
    results_dir = Path(results_dir).absolute()
    df = prepare(runs)
    df["sweep_id"] = df["sweep_id"].fillna("no-sweep").astype(str) if "sweep_id" in df else "no-sweep"
    dirs = []
    with _wandb_env(results_dir):
        for sweep in sorted(df["sweep_id"].unique()):
            sub = df[df["sweep_id"] == sweep]
            run = None
            try:
                run_id = "report-" + hashlib.sha256(f"{project}/{sweep}".encode()).hexdigest()[:16]
                run = wandb.init(project=project, entity=entity, mode=mode, dir=str(results_dir), id=run_id,
                                 resume="allow", job_type="report", group=sweep, name=f"report-{sweep}",
                                 config={"sweep_id": sweep, "runs": len(sub), "tasks": sorted(sub["task"].unique())})
                payload: dict[str, Any] = {}
                summary: dict[str, Any] = {}
                for task in task_order(sub["task"]):
                    for rep in tables(sub, task):
                        key = rep.slug
                        s = rep.summary.assign(
                            cell=[rep.label(x) for x in rep.summary["row"]],
                            entry=[entry(m, h, n) for m, h, n in
                                   zip(rep.summary["mean"], rep.summary["half"], rep.summary["n"])])
                        s = s[["cell", "lr", "gap", "n", "mean", "lo", "hi", "solved", "best", "diverged", "failed",
                               "time_capped", "baseline", "entry"]]
                        payload[f"{key}/scores"] = wandb.Table(dataframe=s.astype(
                            {"gap": int, "n": int, "solved": int, "best": bool, "lr": float, "diverged": int,
                             "failed": int, "time_capped": int, "mean": float, "lo": float, "hi": float,
                             "baseline": float, "cell": str, "entry": str}))
                        payload[f"{key}/horizon"] = wandb.Table(dataframe=rep.horizons.drop(columns="horizon").astype(str))
                        payload[f"{key}/score_vs_gap"] = wandb.Image(
                            _figure_array(degradation_figure(rep)),
                            caption=f"{rep.title}: {rep.metric} vs gap; band = {BAND}")
                        # the same plot as an interactive chart: one line per cell, mean over seeds
                        lines = [(c, g.dropna(subset=["mean"]).sort_values("gap")) for c, g in s.groupby("cell", sort=False)]
                        lines = [(c, g) for c, g in lines if len(g)]
                        if lines:
                            payload[f"{key}/score_vs_gap_chart"] = wandb.plot.line_series(
                                xs=[g["gap"].astype(int).tolist() for _, g in lines],
                                ys=[g["mean"].astype(float).tolist() for _, g in lines], keys=[c for c, _ in lines],
                                title=f"{rep.title}: mean {rep.metric} over seeds vs gap", xname="gap")
                        summary[f"{key}/score_name"] = rep.metric
                        summary[f"{key}/cells"] = len(lines)
                run.log(payload)
                run.summary.update({"runs": len(sub), "finished": int((sub["status"] == "finished").sum()), **summary})
                dirs.append(str(getattr(run, "dir", "") or ""))
            finally:
                wandb.finish()
    return dirs


# -- command line --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gapbench.report",
        description="Turn the results store into paper-style tables (Markdown + LaTeX booktabs), score-vs-gap "
                    "plots, memory horizons, vanishing-gradient plots and the published numbers of Bai et al. "
                    "2018 side by side. Only finished runs enter means; diverged/failed runs are counted apart.",
        epilog="How to read the output and the memory-horizon criteria: docs/report.md.")
    p.add_argument("--results", default="results", metavar="DIR",
                   help="results directory holding runs/ (and curves/) (default: results)")
    p.add_argument("--out", default=None, metavar="DIR", help="where to write the report (default: <results>/report)")
    p.add_argument("--published", default=str(PUBLISHED_CSV), metavar="CSV",
                   help="published numbers to set beside ours (default: the packaged Bai et al. 2018 Table 1)")
    p.add_argument("--sweep", action="append", metavar="ID",
                   help="report only runs of this sweep_id (repeat for several; default: all runs)")
    p.add_argument("--include-time-capped", action="store_true",
                   help="keep runs stopped by the wall-clock cap trainer.max_time in the tables (default: left out "
                        "and counted)")
    p.add_argument("--lr-per-gap", action="store_true",
                   help="with a learning-rate sweep in the store, select each cell's rate per gap (default: one "
                        "rate per cell and task), by validation score")
    p.add_argument("--wandb", action="store_true",
                   help="also log one W&B summary run per sweep_id (job_type=report), files under <results>/wandb")
    p.add_argument("--wandb-mode", choices=["offline", "online", "disabled"], default="offline",
                   help="W&B mode with --wandb (default: offline; upload later with `wandb sync`)")
    p.add_argument("--wandb-project", default="gapbench", metavar="NAME", help="W&B project (default: gapbench)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    results_dir = Path(args.results).expanduser()
    out_dir = Path(args.out).expanduser() if args.out else results_dir / "report"
    command = " ".join(["python -m gapbench.report", *map(shlex.quote, argv)])

    def fail(msg: str) -> int:
        print(f"gapbench.report: error: {msg}", file=sys.stderr)
        return 2

    if not results_dir.exists():
        return fail(f"results directory {results_dir} does not exist (give it with --results DIR)")
    if not results_dir.is_dir():
        return fail(f"--results {results_dir} is not a directory")
    if not any((results_dir / "runs").glob("*.json")):
        return fail(f"no runs in {results_dir} (expected {results_dir / 'runs'}/*.json; train some with run.py)")
    from gapbench.results import load_runs, of_sweeps
    runs = load_runs(results_dir)
    if args.sweep:
        attrs = dict(runs.attrs)
        known = sorted(runs["sweep_id"].dropna().astype(str).unique())
        runs = of_sweeps(runs, results_dir, args.sweep)  # with the finished runs they reused
        runs.attrs.update(attrs)
        if runs.empty:
            return fail(f"no runs of sweep {', '.join(args.sweep)} in {results_dir}; sweeps there: "
                        f"{', '.join(known) or 'none'}")
    if prepare(runs).empty:
        return fail(f"no readable runs in {results_dir / 'runs'}")
    curves = None
    try:
        from gapbench.results import load_curves
        curves = load_curves(results_dir)
    except ImportError:
        pass
    published = None
    if args.published:
        try:
            published = load_published(args.published)
        except (OSError, ValueError, ReportError) as e:
            return fail(f"cannot read published numbers {args.published}: {str(e).splitlines()[0]}")
    try:
        written = write_report(runs, out_dir, curves=curves, published=published, command=command,
                               include_time_capped=args.include_time_capped, lr_per_gap=args.lr_per_gap)
    except ReportError as e:
        return fail(str(e))
    except OSError as e:
        return fail(f"cannot write the report to {out_dir}: {e.strerror or e}")
    print(f"report: {len(written)} files in {out_dir} (start at {out_dir / 'index.md'})")
    if args.wandb:
        try:
            dirs = log_wandb(runs, results_dir, mode=args.wandb_mode, project=args.wandb_project)
        except Exception as e:  # e.g. online without credentials; the files above are written
            print(f"gapbench.report: error: W&B logging failed ({type(e).__name__}: "
                  f"{(str(e).strip().splitlines() or [''])[0]}); the report files are written", file=sys.stderr)
            return 1
        print(f"wandb ({args.wandb_mode}): {len(dirs)} report run(s) under {results_dir.absolute() / 'wandb'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
