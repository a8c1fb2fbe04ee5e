"""Paper-style tables, degradation plots and memory horizons from the results store.

    python -m gapbench.report                        # results/ -> results/report/
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
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from gapbench import cells as cell_registry
from gapbench import tasks as task_registry

# -- names and "solved" criteria come from the components themselves (Task / cell metadata) -------
RELATIVE_SOLVED = 0.5      # tasks without a fixed criterion: closes >= 50% of the distance baseline -> the cell's best mean
BAND = "min–max over seeds"
PUBLISHED_CSV = Path(__file__).with_name("data") / "published_bai2018.csv"
NUMERIC = ["gap", "seed", "steps", "wall_s", "score", "test_loss", "baseline"]


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


def entry(mean: float, std: float, n: int) -> str:
    """`mean ± std (n)`; n=1 has no ±; n=0 is an em dash."""
    if n == 0:
        return "—"
    if n == 1 or not np.isfinite(std):
        return f"{fmt(mean)} ({n})"
    std = _denoise(mean, std)
    return f"{fmt(mean)} ± {fmt(std, 2)} ({n})"


def _denoise(mean: float, std: float) -> float:
    """A std that is only floating-point noise (equal scores summed in another order) shows as 0."""
    return 0.0 if std <= 1e-9 * max(abs(mean), 1e-300) else std


def arrow(higher_is_better: bool) -> str:
    return "↑ higher is better" if higher_is_better else "↓ lower is better"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_TEX_SYMBOLS = {"±": r"$\pm$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "≥": r"$\geq$", "≤": r"$\leq$",
                "—": "---", "–": "--", "‖": r"$\|$", "∂": r"$\partial$", "×": r"$\times$"}


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


def tex_entry(mean: float, std: float, n: int) -> str:
    if n == 0:
        return "---"
    if n == 1 or not np.isfinite(std):
        return f"{tex_number(fmt(mean))} ({n})"
    std = _denoise(mean, std)
    return f"{tex_number(fmt(mean))} $\\pm$ {tex_number(fmt(std, 2))} ({n})"


def task_title(task: str) -> str:
    cls = task_registry.find(task)
    return cls.title if cls else task


def gap_meaning(task: str) -> str:
    cls = task_registry.find(task)
    return cls.gap_meaning if cls else "gap"


def cell_order(cells: Iterable[str]) -> list[str]:
    cells = list(dict.fromkeys(cells))
    return [c for c in cell_registry.names() if c in cells] + sorted(c for c in cells if c not in cell_registry.names())


# -- aggregation ---------------------------------------------------------------------------------
def prepare(runs: pd.DataFrame) -> pd.DataFrame:
    """Types the store's columns (numbers as numbers, gap/seed as int) and drops rows with no task."""
    df = runs.copy()
    for col in NUMERIC:
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    df = df[df["task"].notna() & df["cell"].notna() & df["gap"].notna()].copy()
    df["gap"] = df["gap"].astype(int)
    if "seed" in df:
        df["seed"] = df["seed"].fillna(-1).astype(int)
    df["status"] = df["status"].fillna("unknown").astype(str)
    df["higher_is_better"] = df["higher_is_better"].map(
        lambda v: v if isinstance(v, (bool, np.bool_)) else str(v).lower() in ("true", "1"))
    return df


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, cell, gap): n, mean, std (ddof=1), min, max over *finished* seeds, the
    counts of diverged / failed / other runs, the baseline and the metric's name and direction."""
    df = prepare(runs)
    rows = []
    for (task, cell, gap), g in df.groupby(["task", "cell", "gap"], sort=True):
        ok = g[g["status"] == "finished"]["score"].dropna()
        rows.append({
            "task": task, "cell": cell, "gap": int(gap), "n": int(ok.size),
            "mean": ok.mean() if ok.size else np.nan,
            "std": ok.std(ddof=1) if ok.size > 1 else np.nan,
            "min": ok.min() if ok.size else np.nan, "max": ok.max() if ok.size else np.nan,
            "diverged": int((g["status"] == "diverged").sum()), "failed": int((g["status"] == "failed").sum()),
            "other": int((~g["status"].isin(["finished", "diverged", "failed"])).sum()),
            "finished_without_score": int(((g["status"] == "finished") & g["score"].isna()).sum()),
            "baseline": g["baseline"].dropna().mean() if g["baseline"].notna().any() else np.nan,
            "score_name": _one(g["score_name"]), "higher_is_better": bool(_one(g["higher_is_better"])),
        })
    return pd.DataFrame(rows, columns=["task", "cell", "gap", "n", "mean", "std", "min", "max", "diverged",
                                       "failed", "other", "finished_without_score", "baseline",
                                       "score_name", "higher_is_better"])


def _one(values: pd.Series) -> Any:
    """The value a column should hold once per task (the most common one)."""
    values = values.dropna()
    return values.mode().iloc[0] if len(values) else None


def best_mask(summary: pd.DataFrame) -> pd.DataFrame:
    """Boolean cell x gap frame: the best mean per gap (ties within 1e-9 relative all best)."""
    means = summary.pivot(index="cell", columns="gap", values="mean")
    higher = bool(summary["higher_is_better"].iloc[0])
    best = means.max() if higher else means.min()
    mask = pd.DataFrame(False, index=means.index, columns=means.columns)
    for gap in means.columns:
        if np.isfinite(best[gap]):
            mask[gap] = np.isclose(means[gap].to_numpy(dtype=float), best[gap], rtol=1e-9, atol=0.0)
    return mask


# -- memory horizon ------------------------------------------------------------------------------
@dataclass
class Criterion:
    text: str                        # how it reads in the report
    task_class: Any = None            # solved: the task's own criterion (Task.solved_threshold)
    relative: float | None = None     # solved: closes this fraction of baseline -> the cell's best mean


def criterion_for(task: str, score_name: str | None, higher: bool) -> Criterion:
    cls = task_registry.find(task)
    if cls is not None and cls.solved_text and score_name == cls.score_name:
        return Criterion(cls.solved_text, task_class=cls)
    return Criterion(f"{score_name} closes ≥ {RELATIVE_SOLVED:.0%} of the distance from the baseline to the "
                     "cell's own best mean score (over gaps)", relative=RELATIVE_SOLVED)


def thresholds(task: str, cell_summary: pd.DataFrame) -> pd.Series:
    """The score that counts as solved, per gap, for one cell (NaN: cannot be solved there)."""
    s = cell_summary.set_index("gap").sort_index()
    higher = bool(s["higher_is_better"].iloc[0])
    crit = criterion_for(task, s["score_name"].iloc[0], higher)
    if crit.task_class is not None:
        return s["baseline"].astype(float).map(crit.task_class.solved_threshold).astype(float)
    best = s["mean"].max() if higher else s["mean"].min()
    base = s["baseline"].astype(float)
    thr = base + crit.relative * (best - base)
    improves = (best > base) if higher else (best < base)  # a cell that never beats the baseline never solves
    return thr.where(improves, np.nan)


def interpolate_horizon(gaps: Iterable[float], margins: Iterable[float]) -> tuple[str, float]:
    """Horizon of one seed from its margins (score beyond the threshold, >= 0 = solved), gaps ascending.

    ('crossed', g*): g* interpolated linearly in log(gap) between the last solved gap before the
    first failure and that failure; ('above', max gap) when no gap fails; ('below', min gap) when
    the smallest gap already fails. A NaN margin counts as a failure."""
    gaps, margins = np.asarray(list(gaps), float), np.asarray(list(margins), float)
    if gaps.size == 0:
        return "none", np.nan
    ok = np.where(np.isnan(margins), False, margins >= 0)
    if ok.all():
        return "above", float(gaps[-1])
    j = int(np.argmin(ok))  # first failure
    if j == 0:
        return "below", float(gaps[0])
    x0, x1 = math.log(gaps[j - 1]), math.log(gaps[j])
    m0, m1 = margins[j - 1], margins[j]
    frac = 1.0 if np.isnan(m1) else m0 / (m0 - m1)
    return "crossed", float(math.exp(x0 + frac * (x1 - x0)))


def seed_horizons(runs: pd.DataFrame, task: str) -> pd.DataFrame:
    """One row per (cell, seed): kind ('crossed' | 'above' | 'below'), horizon (gap)."""
    df = prepare(runs)
    df = df[(df["task"] == task) & (df["status"] == "finished") & df["score"].notna()]
    summary = summarize(df)
    rows = []
    for cell, cs in summary.groupby("cell"):
        thr = thresholds(task, cs)
        higher = bool(cs["higher_is_better"].iloc[0])
        for seed, g in df[df["cell"] == cell].groupby("seed"):
            g = g.groupby("gap")["score"].mean().sort_index()
            margin = (g - thr.reindex(g.index)) * (1 if higher else -1)
            kind, h = interpolate_horizon(g.index, margin.to_numpy())
            rows.append({"cell": cell, "seed": int(seed), "kind": kind, "horizon": h,
                         "min_gap": int(g.index.min()), "max_gap": int(g.index.max())})
    return pd.DataFrame(rows, columns=["cell", "seed", "kind", "horizon", "min_gap", "max_gap"])


def horizon_summary(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Per cell: mean ± std (ddof=1) of the interpolated horizons, the censored seeds, and the text."""
    rows = []
    for cell in cell_order(per_seed["cell"]):
        s = per_seed[per_seed["cell"] == cell]
        crossed = s[s["kind"] == "crossed"]["horizon"]
        above, below = s[s["kind"] == "above"], s[s["kind"] == "below"]
        n = len(crossed)
        mean = crossed.mean() if n else np.nan
        std = crossed.std(ddof=1) if n > 1 else np.nan
        parts = []
        if n:
            parts.append(f"{fmt_gap(mean)} ± {fmt(std, 2)} ({n})" if n > 1 else f"{fmt_gap(mean)} (1)")
        if len(above):
            top = int(above["horizon"].max())
            parts.append(f"≥ {top}" if not n and not len(below) else f"{len(above)} seed{'s' * (len(above) > 1)} ≥ {top}")
        if len(below):
            low = int(below["horizon"].min())
            parts.append(f"< {low}" if not n and not len(above) else f"{len(below)} seed{'s' * (len(below) > 1)} < {low}")
        per = ", ".join(f"s{r.seed}: " + (fmt_gap(r.horizon) if r.kind == "crossed" else
                                           f"≥ {int(r.horizon)}" if r.kind == "above" else f"< {int(r.horizon)}")
                        for r in s.sort_values("seed").itertuples())
        rows.append({"cell": cell, "mean": mean, "std": std, "n": n, "n_above": len(above), "n_below": len(below),
                     "text": "; ".join(parts) or "—", "per_seed": per})
    return pd.DataFrame(rows, columns=["cell", "mean", "std", "n", "n_above", "n_below", "text", "per_seed"])


# -- tables --------------------------------------------------------------------------------------
@dataclass
class TaskReport:
    task: str
    summary: pd.DataFrame         # summarize() rows of this task
    horizons: pd.DataFrame        # horizon_summary()
    per_seed: pd.DataFrame        # seed_horizons()
    criterion: Criterion
    duplicates: int = 0           # finished runs repeating a (cell, gap, seed) already counted

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
    def gaps(self) -> list[int]:
        return sorted(self.summary["gap"].unique())

    @property
    def cells(self) -> list[str]:
        return cell_order(self.summary["cell"])

    def baselines(self) -> dict[int, float]:
        return self.summary.groupby("gap")["baseline"].mean().to_dict()

    def caption(self) -> str:
        return (f"{self.title}: {self.score_name} ({arrow(self.higher)}) by gap "
                f"({gap_meaning(self.task)}). Entries: mean ± sample std (n finished seeds); "
                f"best per gap in bold (ties all bold); diverged and failed runs are not in the means.")

    def excluded(self) -> pd.DataFrame:
        s = self.summary
        return s[(s["diverged"] + s["failed"] + s["other"]) > 0][["cell", "gap", "diverged", "failed", "other"]]


def task_report(runs: pd.DataFrame, task: str) -> TaskReport:
    df = prepare(runs)
    df = df[df["task"] == task]
    if df.empty:
        raise ReportError(f"no runs of task {task}")
    summary = summarize(df)
    per_seed = seed_horizons(df, task)
    crit = criterion_for(task, summary["score_name"].iloc[0], bool(summary["higher_is_better"].iloc[0]))
    ok = df[df["status"] == "finished"]
    dup = int(ok.duplicated(["cell", "gap", "seed"], keep="first").sum())
    return TaskReport(task, summary, horizon_summary(per_seed), per_seed, crit, dup)


def _grid(rep: TaskReport, cell_fn, base_fn) -> tuple[list[str], list[list[str]]]:
    mask = best_mask(rep.summary)
    s = rep.summary.set_index(["cell", "gap"])
    rows = []
    for cell in rep.cells:
        row = [cell]
        for gap in rep.gaps:
            if (cell, gap) in s.index:
                r = s.loc[(cell, gap)]
                row.append(cell_fn(r["mean"], r["std"], int(r["n"]), bool(mask.loc[cell, gap]) and r["n"] > 0))
            else:
                row.append(cell_fn(np.nan, np.nan, 0, False))
        rows.append(row)
    bases = rep.baselines()
    rows.append(base_fn([bases.get(g, np.nan) for g in rep.gaps]))
    return [str(g) for g in rep.gaps], rows


def markdown_table(rep: TaskReport) -> str:
    def cell_fn(mean, std, n, best):
        e = entry(mean, std, n)
        return f"**{e}**" if best else e
    gaps, rows = _grid(rep, cell_fn, lambda b: ["*baseline*"] + [f"*{fmt(v)}*" for v in b])
    frame = pd.DataFrame([r[1:] for r in rows], index=[r[0] for r in rows], columns=[f"gap {g}" for g in gaps])
    frame.index.name = "cell"
    return frame.to_markdown(colalign=["left"] + ["right"] * len(gaps))


def latex_table(rep: TaskReport) -> str:
    def cell_fn(mean, std, n, best):
        e = tex_entry(mean, std, n)
        return f"\\textbf{{{e}}}" if best else e
    gaps, rows = _grid(rep, cell_fn, lambda b: ["\\textit{baseline}"] + [tex_number(fmt(v)) for v in b])
    k = len(gaps)
    lines = [
        "% generated by python -m gapbench.report; needs \\usepackage{booktabs}",
        "\\begin{table}[t]", "\\centering",
        f"\\caption{{{tex_escape(rep.caption())}}}",
        f"\\label{{tab:gapbench-{re.sub('[^A-Za-z0-9]+', '-', rep.task)}}}",
        f"\\begin{{tabular}}{{l{'r' * k}}}", "\\toprule",
        f" & \\multicolumn{{{k}}}{{c}}{{gap}} \\\\", f"\\cmidrule(lr){{2-{k + 1}}}",
        "Cell & " + " & ".join(gaps) + " \\\\", "\\midrule",
    ]
    for r in rows[:-1]:
        lines.append(" & ".join([tex_escape(r[0])] + r[1:]) + " \\\\")
    lines += ["\\midrule", " & ".join(rows[-1]) + " \\\\", "\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(lines)


def horizon_markdown(rep: TaskReport) -> str:
    h = rep.horizons
    frame = pd.DataFrame({"memory horizon (gap)": h["text"].to_numpy(), "per seed": h["per_seed"].to_numpy()},
                         index=pd.Index(h["cell"], name="cell"))
    return (f"Memory horizon — the largest gap at which the cell still solves the task: "
            f"{rep.criterion.text}. Interpolated linearly in log(gap) between the last solved gap and the "
            f"first failing one, per seed; mean ± sample std (n seeds that cross). '≥ G': solved at every "
            f"measured gap up to G; '< G': not solved even at the smallest gap G.\n\n"
            + (frame.to_markdown(stralign="left") if len(frame) else "(no finished runs)") + "\n")


def excluded_markdown(rep: TaskReport) -> str:
    ex = rep.excluded()
    if ex.empty:
        return ""
    ex = ex.assign(cell=pd.Categorical(ex["cell"], rep.cells, ordered=True)).sort_values(["cell", "gap"])
    return ("Runs not in the means (diverged, failed, or other status):\n\n"
            + ex.to_markdown(index=False) + "\n")


# -- plots ---------------------------------------------------------------------------------------
def _figure():
    """A Figure drawn by the Agg canvas, without pyplot: no global backend switch, nothing to close."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7.5, 4.8), dpi=110)
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def _colors(cells: list[str]) -> dict[str, Any]:
    import matplotlib
    cmap = matplotlib.colormaps["tab10"]
    order = cell_registry.names()
    known = {c: cmap(i % 10) for i, c in enumerate(order)}
    extra = [c for c in cells if c not in known]
    return {**known, **{c: cmap((len(order) + i) % 10) for i, c in enumerate(extra)}}


def degradation_figure(rep: TaskReport):
    from matplotlib.ticker import NullFormatter, ScalarFormatter
    fig, ax = _figure()
    colors = _colors(rep.cells)
    s = rep.summary[rep.summary["n"] > 0]
    hz = rep.horizons.set_index("cell")
    for cell in rep.cells:
        c = s[s["cell"] == cell].sort_values("gap")
        if c.empty:
            continue
        label = cell + (f" (horizon {hz.loc[cell, 'text']})" if cell in hz.index else "")
        ax.plot(c["gap"], c["mean"], "o-", color=colors[cell], label=label, lw=1.6, ms=4)
        ax.fill_between(c["gap"], c["min"], c["max"], color=colors[cell], alpha=0.15, lw=0)
        if cell in hz.index and hz.loc[cell, "n"] > 0:
            ax.axvline(hz.loc[cell, "mean"], color=colors[cell], ls=":", lw=1.3)
    bases = pd.Series(rep.baselines()).sort_index().dropna()
    if len(bases):
        if np.allclose(bases.to_numpy(), bases.iloc[0]):
            ax.axhline(bases.iloc[0], color="0.3", ls="--", lw=1.2, label=f"baseline {fmt(bases.iloc[0])}")
        else:
            ax.plot(bases.index, bases.to_numpy(), "--", color="0.3", lw=1.2, label="baseline")
    if rep.criterion.task_class is not None and len(bases):
        solved = bases.map(rep.criterion.task_class.solved_threshold).astype(float)
        if np.allclose(solved.to_numpy(), solved.iloc[0]):
            ax.axhline(solved.iloc[0], color="0.6", ls="-.", lw=1, label=f"solved: {rep.criterion.text}")
        else:
            ax.plot(solved.index, solved.to_numpy(), "-.", color="0.6", lw=1, label=f"solved: {rep.criterion.text}")
    ax.set_xscale("log")
    vals = pd.concat([s["min"], s["max"], bases]).dropna()
    if not rep.higher and len(vals) and (vals > 0).all() and vals.max() / vals.min() > 100:
        ax.set_yscale("log")
    ax.set_xticks(rep.gaps)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"gap ({gap_meaning(rep.task)}), log scale")
    ax.set_ylabel(f"{rep.score_name} ({arrow(rep.higher)})")
    ax.set_title(f"{rep.title}: {rep.score_name} vs gap\nline = mean over finished seeds, band = {BAND}, "
                 "dotted vertical = mean memory horizon", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def gradients_figure(curves: pd.DataFrame, task: str):
    """‖∂L/∂h_t‖ against steps back from the end, at the largest gap with curves, at each run's
    latest recorded train step, averaged over seeds; None when there is nothing to draw."""
    c = curves[curves["task"] == task].copy()
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
    cells = cell_order(c["cell"])
    colors = _colors(cells)
    steps = sorted(int(s) for s in c["train_step"].unique())
    for cell in cells:
        g = c[c["cell"] == cell].groupby("back")["grad_norm"].agg(["mean", "min", "max"])
        n = c[c["cell"] == cell]["run_id"].nunique()
        of_x = "wrt" in c and (c.loc[c["cell"] == cell, "wrt"] == "x_t").any()  # no state: the probe's ‖∂L/∂x_t‖
        ax.plot(g.index, g["mean"], color=colors[cell], lw=1.5,
                label=f"{cell} ({n} run{'s' * (n > 1)}){', ‖∂L/∂x_t‖' if of_x else ''}")
        ax.fill_between(g.index, g["min"], g["max"], color=colors[cell], alpha=0.12, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("steps back from the end of the sequence (T_len - 1 - t)")
    ax.set_ylabel("‖∂L/∂h_t‖ (mean over batch), log scale")
    ax.set_title(f"{task_title(task)}, gap {gap}: gradient reaching back in time\nat train step "
                 f"{', '.join(map(str, steps[:4]))}{'…' if len(steps) > 4 else ''}; line = mean, band = {BAND}",
                 fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _save(fig, path: Path) -> Path:
    fig.savefig(path)
    return path


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
        if len(vals):
            ours = entry(vals.mean(), vals.std(ddof=1) if len(vals) > 1 else np.nan, len(vals))
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
            f"Source: {sources}. Ours: mean ± sample std (n finished seeds) of the column named, over our runs "
            "with the same task, gap and cell; 'not run' where there are none. "
            + (f"The paper tuned each model to a fixed parameter budget ({sizes}) and trained to convergence; "
               if sizes else "")
            + "Our runs use the settings stored in "
            "their `cfg.*` columns (hidden size, steps), so compare the order of magnitude, not the digits.\n\n"
            + show.to_markdown(index=False) + "\n\n" + (f"Notes:\n\n{notes}" if notes else ""))


# -- index ---------------------------------------------------------------------------------------
def _date_range(df: pd.DataFrame) -> str:
    start = pd.to_datetime(df.get("started_at"), utc=True, errors="coerce").dropna()
    end = pd.to_datetime(df.get("finished_at"), utc=True, errors="coerce").dropna()
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
                     "steps run": (f"{int(steps.min())}–{int(steps.max())}" if len(steps) and steps.min() != steps.max()
                                   else f"{int(steps.min())}" if len(steps) else "?"),
                     "wall (h)": f"{g['wall_s'].sum() / 3600:.2f}"})
    return pd.DataFrame(rows)


def index_markdown(df: pd.DataFrame, files: dict[str, list[str]], command: str, extra: list[str],
                   corrupt: list[str]) -> str:
    dev = df["device"].fillna("unknown").value_counts() if "device" in df else pd.Series(dtype=int)
    devices = ", ".join(f"{d} ({n} run{'s' * (n > 1)})" for d, n in dev.items()) or "unknown"
    torch_v = ", ".join(sorted(df["torch_version"].dropna().astype(str).unique())) if "torch_version" in df else ""
    status = df["status"].value_counts()
    counts = ", ".join(f"{n} {s}" for s, n in status.items())
    lines = [
        "# gapbench report", "",
        f"Produced by `{command}` at {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.", "",
        f"- **Runs summarised:** {len(df)} ({counts}); only finished runs enter means, horizons and "
        "comparisons.",
        f"- **Dates of the runs:** {_date_range(df)}.",
        f"- **Hardware:** {devices}" + (f"; torch {torch_v}" if torch_v else "") + ".",
        "- **Budget:** steps per run as configured (`cfg.trainer.max_steps`) and as run (`steps`), per sweep "
        "below.",
    ]
    if corrupt:
        lines.append(f"- **Skipped:** {len(corrupt)} corrupt record(s): {', '.join(corrupt[:5])}"
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
                 published: pd.DataFrame | None = None, command: str = "python -m gapbench.report") -> list[Path]:
    """Write every file of the report into out_dir; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df = prepare(runs)
    if df.empty:
        raise ReportError("no runs to report")
    written: list[Path] = []
    files: dict[str, list[str]] = {}
    if curves is not None and len(curves) and "run_id" in curves and "run_id" in df:
        curves = curves[curves["run_id"].isin(df.loc[df["status"] == "finished", "run_id"])]

    def put(name: str, text: str) -> None:
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)

    for task in sorted(df["task"].unique()):
        rep = task_report(df, task)
        names = [f"{task}.md", f"{task}.tex", f"{task}_degradation.png", f"{task}_horizon.md"]
        written.append(_save(degradation_figure(rep), out / f"{task}_degradation.png"))
        grad = gradients_figure(curves, task) if curves is not None and len(curves) else None
        if grad is not None:
            written.append(_save(grad, out / f"{task}_gradients.png"))
            names.append(f"{task}_gradients.png")
        put(f"{task}.tex", latex_table(rep))
        put(f"{task}_horizon.md", f"# {rep.title}: memory horizon\n\n" + horizon_markdown(rep))
        warn = []
        if rep.duplicates:
            sweeps = ", ".join(sorted(df[df["task"] == task]["sweep_id"].dropna().astype(str).unique())) \
                if "sweep_id" in df else "?"
            warn = [f"**Note:** {rep.duplicates} finished run(s) repeat a (cell, gap, seed) already counted "
                    f"(another config or sweep: {sweeps}); all are averaged. Use `--sweep ID` to report one sweep.",
                    ""]
        md = [f"# {rep.title} (`{task}`)", "", *warn, f"**Table.** {rep.caption()}", "", markdown_table(rep), "",
              excluded_markdown(rep), "## Memory horizon", "", horizon_markdown(rep),
              f"![score vs gap]({task}_degradation.png)", "",
              f"Score vs gap: mean over finished seeds, band = {BAND}, dashed = baseline, dotted vertical "
              "lines = mean memory horizon. LaTeX: [" + f"{task}.tex]({task}.tex).", ""]
        if grad is not None:
            md += [f"![gradient vs distance]({task}_gradients.png)", "",
                   "‖∂L/∂h_t‖ against steps back from the end (log y): a straight falling line is exponential "
                   "decay, the vanishing gradient.", ""]
        put(f"{task}.md", "\n".join(md))
        files[task] = names

    extra = []
    if published is not None and len(published):
        put("published.md", published_markdown(published_comparison(df, published), published))
        extra.append("published.md")
    put("index.md", index_markdown(df, files, command, extra, list(runs.attrs.get("corrupt", []))))
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
    line chart per task (wandb.plot.line_series, one line per cell). Returns the run dirs."""
    import wandb
    results_dir = Path(results_dir).absolute()
    df = prepare(runs)
    df["sweep_id"] = df["sweep_id"].fillna("no-sweep").astype(str) if "sweep_id" in df else "no-sweep"
    dirs = []
    with _wandb_env(results_dir):
        for sweep in sorted(df["sweep_id"].unique()):
            sub = df[df["sweep_id"] == sweep]
            run = None
            try:
                run = wandb.init(project=project, entity=entity, mode=mode, dir=str(results_dir),
                                 job_type="report", group=sweep, name=f"report-{sweep}",
                                 config={"sweep_id": sweep, "runs": len(sub), "tasks": sorted(sub["task"].unique())})
                payload: dict[str, Any] = {}
                summary: dict[str, Any] = {}
                for task in sorted(sub["task"].unique()):
                    rep = task_report(sub, task)
                    s = rep.summary.assign(entry=[entry(m, sd, n) for m, sd, n in
                                                  zip(rep.summary["mean"], rep.summary["std"], rep.summary["n"])])
                    s = s[["cell", "gap", "n", "mean", "std", "min", "max", "diverged", "failed", "baseline", "entry"]]
                    payload[f"{task}/scores"] = wandb.Table(dataframe=s.astype({"gap": int, "n": int}))
                    payload[f"{task}/horizon"] = wandb.Table(dataframe=rep.horizons.astype(str))
                    payload[f"{task}/score_vs_gap"] = wandb.Image(
                        _figure_array(degradation_figure(rep)),
                        caption=f"{rep.title}: {rep.score_name} vs gap; band = {BAND}")
                    # the same plot as an interactive chart: one line per cell, mean over seeds
                    lines = [(c, g.dropna(subset=["mean"]).sort_values("gap"))
                             for c, g in s.groupby("cell", sort=False)]
                    lines = [(c, g) for c in cell_order(s["cell"]) for cc, g in lines if cc == c and len(g)]
                    if lines:
                        payload[f"{task}/score_vs_gap_chart"] = wandb.plot.line_series(
                            xs=[g["gap"].astype(int).tolist() for _, g in lines],
                            ys=[g["mean"].astype(float).tolist() for _, g in lines], keys=[c for c, _ in lines],
                            title=f"{rep.title}: mean {rep.score_name} over seeds vs gap", xname="gap")
                    summary[f"{task}/score_name"] = rep.score_name
                    summary[f"{task}/cells"] = len(lines)
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
    from gapbench.results import load_runs
    runs = load_runs(results_dir)
    if args.sweep:
        corrupt = runs.attrs.get("corrupt", [])
        known = sorted(runs["sweep_id"].dropna().astype(str).unique())
        runs = runs[runs["sweep_id"].astype(str).isin(args.sweep)]
        runs.attrs["corrupt"] = corrupt
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
        written = write_report(runs, out_dir, curves=curves, published=published, command=command)
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
