"""The statistics every number of the report rests on (scipy.stats / scipy.optimize underneath).

- `t_interval`: mean and its 95% confidence interval over seeds, Student t with n - 1 degrees of freedom.
- `permutation_p`: two-sided exact permutation test of a difference in means (every split of the
  pooled seeds enumerated while there are at most `EXACT_LIMIT` splits). `welch_p`: Welch's t test.
- `beats_all`: the rule that marks a cell best at a gap: it beats *every* other cell by the
  permutation test at alpha (an intersection-union test: level alpha without correction).
- `beyond_baseline`: the whole 95% interval lies on the good side of the memoryless baseline.
- `fit_horizon` / `horizons`: the memory horizon, the gap at which a logistic fit of the success
  probability in log(gap), over all seeds and gaps, crosses 0.5, with a bootstrap interval over seeds.

Methods and their wording in the report: docs/report.md.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.special import expit

LEVEL = 0.95
ALPHA = 0.05
EXACT_LIMIT = 200_000       # splits enumerated by the exact permutation test; beyond, 20,000 random ones
BOOTSTRAP = 1000            # bootstrap resamples of the seeds for the horizon interval


def _clean(values: Iterable[float]) -> np.ndarray:
    a = np.asarray(list(values), dtype=float)
    return a[np.isfinite(a)]


# -- intervals -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    mean: float
    lo: float
    hi: float
    n: int

    @property
    def half(self) -> float:
        """Half-width: the `±` of `mean ± half`."""
        return (self.hi - self.lo) / 2


def t_interval(values: Iterable[float], level: float = LEVEL) -> Interval:
    """mean ± t_{(1+level)/2, n-1} · s / √n over the finite values (s with ddof = 1). n = 1: the
    interval is unknown (NaN bounds); n = 0: everything NaN. Equal values give a zero-width interval."""
    a = _clean(values)
    n = a.size
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(a.mean())
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1)
    sd = float(a.std(ddof=1))
    if sd <= 1e-12 * max(abs(mean), 1e-300):  # equal scores summed in another order: no spread
        sd = 0.0
    half = float(sps.t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


# -- tests ---------------------------------------------------------------------------------------
def permutation_p(a: Iterable[float], b: Iterable[float], seed: int = 0) -> float:
    """Two-sided p-value of the difference in means of a and b under exchangeability (scipy's
    `permutation_test`, 2 × the smaller one-sided tail, capped at 1). Exact (all C(n_a + n_b, n_a)
    splits) while those number at most EXACT_LIMIT; else 20,000 random splits from `seed`.
    NaN when a side has no value."""
    a, b = _clean(a), _clean(b)
    if a.size == 0 or b.size == 0:
        return math.nan
    if np.ptp(np.concatenate([a, b])) == 0:
        return 1.0
    exact = math.comb(a.size + b.size, a.size) <= EXACT_LIMIT
    res = sps.permutation_test((a, b), lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis),
                               permutation_type="independent", alternative="two-sided", vectorized=True,
                               n_resamples=np.inf if exact else 20_000, rng=np.random.default_rng(seed))
    return float(min(1.0, res.pvalue))


def welch_p(a: Iterable[float], b: Iterable[float]) -> float:
    """Two-sided p-value of Welch's t test (unequal variances). NaN with fewer than 2 values a side;
    both sides without spread: 1 if the means are equal, else 0."""
    a, b = _clean(a), _clean(b)
    if a.size < 2 or b.size < 2:
        return math.nan
    if a.std() == 0 and b.std() == 0:
        return 1.0 if a.mean() == b.mean() else 0.0
    return float(sps.ttest_ind(a, b, equal_var=False).pvalue)


def better(x: float, y: float, higher_is_better: bool) -> bool:
    return x > y if higher_is_better else x < y


def beats_all(samples: dict[str, Iterable[float]], higher_is_better: bool, alpha: float = ALPHA,
              min_n: int = 2) -> str | None:
    """The one key whose values beat every other key's by the two-sided permutation test at alpha
    (its mean better and p < alpha against each), or None. Needs at least two keys with at least
    `min_n` values each; keys with fewer values cannot win and are not compared."""
    vals = {k: _clean(v) for k, v in samples.items()}
    vals = {k: v for k, v in vals.items() if v.size >= min_n}
    if len(vals) < 2:
        return None
    means = {k: v.mean() for k, v in vals.items()}
    top = max(means, key=means.get) if higher_is_better else min(means, key=means.get)
    for k, v in vals.items():
        if k == top:
            continue
        if not better(means[top], means[k], higher_is_better) or not permutation_p(vals[top], v) < alpha:
            return None
    return top


def beyond_baseline(values: Iterable[float], baseline: float, higher_is_better: bool,
                    level: float = LEVEL) -> bool:
    """True when the whole t interval of the mean lies strictly on the good side of the baseline
    (so the entry is not within noise of a memoryless predictor). False with n < 2 or no baseline."""
    ci = t_interval(values, level)
    if ci.n < 2 or not np.isfinite(baseline):
        return False
    return ci.lo > baseline if higher_is_better else ci.hi < baseline


# -- memory horizon ------------------------------------------------------------------------------
@dataclass
class Horizon:
    """kind: 'crossed' (estimate inside the measured gaps), 'above' (success ≥ 0.5 up to the largest
    gap: horizon ≥ max_gap), 'below' (< 0.5 already at the smallest gap: horizon < min_gap), 'none'.
    lo/hi: the bootstrap interval (np.inf: beyond the largest gap; 0: below the smallest)."""
    kind: str
    estimate: float
    lo: float
    hi: float
    min_gap: int
    max_gap: int
    n_seeds: int
    solved: dict[int, tuple[int, int]] = field(default_factory=dict)  # gap -> (solved seeds, seeds)

    @property
    def censored(self) -> bool:
        return self.kind in ("above", "below")

    def text(self, fmt=lambda g: f"{g:.0f}") -> str:
        if self.kind == "none":
            return "—"
        if self.kind == "above":
            head = f"≥ {self.max_gap}"
        elif self.kind == "below":
            head = f"< {self.min_gap}"
        else:
            head = fmt(self.estimate)
        if not np.isfinite(self.lo) and not np.isfinite(self.hi):
            return head
        def bound(v):
            return f"< {self.min_gap}" if v <= 0 else f"≥ {self.max_gap}" if not np.isfinite(v) else fmt(v)
        lo, hi = bound(self.lo), bound(self.hi)
        if self.censored and lo == hi:
            return head
        return f"{head} [{lo}, {hi}]"


def _separated(x: np.ndarray, k: np.ndarray, n: np.ndarray) -> tuple[str, float] | None:
    """The limit of the fit when the outcomes separate (no finite maximum-likelihood fit exists):
    all solved below some gap and all failed above it -> the midpoint in log(gap) between the two;
    with one mixed gap between them -> that gap. Success rising with the gap -> censored. None when
    the outcomes overlap (then the fit is finite)."""
    f = k / n
    mixed = np.flatnonzero((f > 0) & (f < 1))
    if mixed.size > 1:
        return None
    if mixed.size == 0:
        if np.all(np.diff(f) <= 0):  # 1 ... 1 0 ... 0
            j = int(np.argmin(f))
            return "crossed", float((x[j - 1] + x[j]) / 2)
        if np.all(np.diff(f) >= 0):  # 0 ... 0 1 ... 1: success rises with the gap
            return "above", math.inf
        return None
    m = int(mixed[0])
    if np.all(f[:m] == 1) and np.all(f[m + 1:] == 0):
        if m == len(x) - 1 and f[m] >= 0.5:
            return "above", math.inf
        if m == 0 and f[m] < 0.5:
            return "below", -math.inf
        return "crossed", float(x[m])
    if np.all(f[:m] == 0) and np.all(f[m + 1:] == 1):
        return "above", math.inf
    return None


def _crossing(x: np.ndarray, k: np.ndarray, n: np.ndarray) -> tuple[str, float]:
    """Fit P(solved) = 1 / (1 + exp(-(a - b·z))), z = standardised log gap, to k solved of n per
    gap by maximum likelihood; return where it crosses 0.5, as a log gap, or a censoring."""
    if k.sum() == n.sum():
        return "above", math.inf
    if k.sum() == 0:
        return "below", -math.inf
    sep = _separated(x, k, n)
    if sep is not None:
        return sep
    mu, sd = x.mean(), x.std() or 1.0
    z = (x - mu) / sd

    def nll(theta):
        eta = theta[0] - theta[1] * z
        return np.sum(n * np.logaddexp(0.0, eta) - k * eta)

    # Newton's method with step halving (the overlap makes the log-likelihood strictly concave);
    # scipy.optimize.minimize does the same at 50x the cost, which the bootstrap multiplies
    theta, Z = np.zeros(2), np.stack([np.ones_like(z), -z], 1)
    for _ in range(100):
        p = expit(Z @ theta)
        step = np.linalg.solve((Z.T * (n * p * (1 - p))) @ Z, Z.T @ (k - n * p))
        t, f0 = 1.0, nll(theta)
        while nll(theta + t * step) > f0 + 1e-12 and t > 1e-6:
            t /= 2
        theta = theta + t * step
        if np.abs(t * step).max() < 1e-10:
            break
    a, b = theta
    p_lo, p_hi = expit(a - b * z.min()), expit(a - b * z.max())
    if b > 0 and p_lo >= 0.5 > p_hi:
        return "crossed", float(mu + sd * a / b)
    # no fall through 0.5 inside the measured gaps (or success rising with the gap)
    return ("above", math.inf) if p_hi >= 0.5 else ("below", -math.inf)


def seed_counts(rows: pd.DataFrame) -> tuple[np.ndarray, list, np.ndarray, np.ndarray] | None:
    """(gaps, seeds, solved counts, run counts) of (seed, gap, solved) rows, the counts per seed (rows)
    and gap (columns): a bootstrap resample or a dropped seed is a weighted sum of these. Rows with
    solved = NaN/None and gap 0 (the fit is in log gap: seq_mnist's undelayed task) are left out;
    None when nothing is left."""
    df = rows[["seed", "gap", "solved"]].dropna()
    df = df[df["gap"] > 0]
    if df.empty:
        return None
    df = df.assign(gap=df["gap"].astype(int), solved=df["solved"].astype(bool).astype(int))
    gaps = np.array(sorted(df["gap"].unique()))
    seeds = sorted(df["seed"].unique())
    k_seed = df.pivot_table(index="seed", columns="gap", values="solved", aggfunc="sum").reindex(
        index=seeds, columns=gaps).fillna(0).to_numpy()
    n_seed = df.pivot_table(index="seed", columns="gap", values="solved", aggfunc="count").reindex(
        index=seeds, columns=gaps).fillna(0).to_numpy()
    return gaps, seeds, k_seed, n_seed


def fit_counts(x: np.ndarray, k: np.ndarray, n: np.ndarray) -> tuple[str, float]:
    """The fit of fit_horizon on summed counts at log gaps x (gaps without runs left out): its kind
    and the crossing as a log gap."""
    keep = n > 0
    return _crossing(x[keep], k[keep], n[keep]) if keep.sum() else ("none", math.nan)


def fit_horizon(rows: pd.DataFrame, n_boot: int = BOOTSTRAP, level: float = LEVEL, seed: int = 0) -> Horizon:
    """Memory horizon of one cell from its (seed, gap, solved) rows: the gap where a logistic fit of
    the success probability in log(gap), over all seeds and gaps, crosses 0.5; its interval is the
    percentile bootstrap over seeds (each resample draws whole seeds with replacement and refits).
    Rows with solved = NaN/None are ignored. A seed that fails once below gaps it solves moves the
    fit a little, not to its failure."""
    counts = seed_counts(rows)
    if counts is None:
        return Horizon("none", math.nan, math.nan, math.nan, 0, 0, 0)
    gaps, seeds, k_seed, n_seed = counts
    x = np.log(gaps.astype(float))
    k, n = k_seed.sum(0), n_seed.sum(0)
    solved = {int(g): (int(a), int(b)) for g, a, b in zip(gaps, k, n)}
    kind, est = fit_counts(x, k, n)
    lo = hi = math.nan
    if n_boot and len(seeds) >= 2:
        rng = np.random.default_rng(seed)
        draws = rng.multinomial(len(seeds), np.full(len(seeds), 1 / len(seeds)), size=n_boot)
        cache: dict[bytes, float] = {}
        logs = np.empty(n_boot)
        for i, w in enumerate(draws):  # with few seeds most resamples repeat: fit each multiset once
            key = w.tobytes()
            if key not in cache:
                cache[key] = fit_counts(x, w @ k_seed, w @ n_seed)[1]
            logs[i] = cache[key]
        logs.sort()  # percentile bootstrap without interpolation (bounds may be ±inf: censored resamples)
        q = logs[math.floor((1 - level) / 2 * (n_boot - 1))], logs[math.ceil((1 + level) / 2 * (n_boot - 1))]
        lo, hi = (float(np.exp(v)) if np.isfinite(v) else (0.0 if v < 0 else math.inf) for v in q)
    if kind == "crossed" and np.isfinite(est):
        # the grid cannot resolve a horizon between two measured gaps: never narrower than that
        g = math.exp(est)
        below, above = gaps[gaps <= g], gaps[gaps >= g]
        lo = min(lo, float(below[-1])) if np.isfinite(lo) or math.isnan(lo) else lo
        hi = max(hi, float(above[0])) if np.isfinite(hi) or math.isnan(hi) else hi
        lo = float(below[-1]) if math.isnan(lo) else lo
        hi = float(above[0]) if math.isnan(hi) else hi
    return Horizon(kind, float(math.exp(est)) if kind == "crossed" else math.nan, lo, hi,
                   int(gaps[0]), int(gaps[-1]), len(seeds), solved)


def horizons(rows: pd.DataFrame, n_boot: int = BOOTSTRAP, level: float = LEVEL, seed: int = 0) -> pd.DataFrame:
    """`fit_horizon` per cell of a DataFrame of (cell, seed, gap, solved) rows: one row per cell with
    kind, estimate, lo, hi, min_gap, max_gap, n_seeds, censored, text and the Horizon itself."""
    out = []
    for cell, g in rows.groupby("cell", sort=False):
        h = fit_horizon(g, n_boot=n_boot, level=level, seed=seed)
        out.append({"cell": cell, "kind": h.kind, "estimate": h.estimate, "lo": h.lo, "hi": h.hi,
                    "min_gap": h.min_gap, "max_gap": h.max_gap, "n_seeds": h.n_seeds, "censored": h.censored,
                    "text": h.text(), "horizon": h})
    return pd.DataFrame(out, columns=["cell", "kind", "estimate", "lo", "hi", "min_gap", "max_gap", "n_seeds",
                                      "censored", "text", "horizon"])
