"""Bracket one memory horizon with few jobs: the search behind `hydra/sweeper=horizon`.

The horizon is the largest gap a cell still solves. Starting from a gap G, the search grows the
gap geometrically (G, G*grow, G*grow^2, ...) while it is solved, or shrinks it (G/grow, ...) while
it fails, until one solved gap `lo` and one failed gap `hi > lo` bracket the horizon; then it
bisects the bracket in log(gap) (the next gap is round(sqrt(lo * hi))) until hi / lo <= factor
or the two are neighbouring integers. Gaps are integers >= min_gap and <= max_gap; a search that
fails at min_gap ends "below", one that solves max_gap ends "above".

A search is a pure state machine: `next_gap()` says which gap to train next, `record(gap, solved)`
feeds the answer back. The sweeper runs one search per combination of the other swept keys and
launches the next gap of every unfinished search as one round of jobs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class HorizonSearch:
    start: int
    min_gap: int = 1
    max_gap: int = 100_000
    factor: float = 1.5
    grow: float = 2.0
    results: dict[int, bool] = field(default_factory=dict)  # gap -> solved, in the order tried

    def __post_init__(self):
        if not self.min_gap <= self.start <= self.max_gap:
            raise ValueError(f"start gap {self.start} is outside [{self.min_gap}, {self.max_gap}]")
        if not self.factor > 1 or not self.grow > 1:
            raise ValueError(f"factor={self.factor} and grow={self.grow} must both be > 1")

    @property
    def lo(self) -> int | None:
        """The largest solved gap below every failed one (None: none solved yet)."""
        hi = self.hi
        solved = [g for g, ok in self.results.items() if ok and (hi is None or g < hi)]
        return max(solved) if solved else None

    @property
    def hi(self) -> int | None:
        """The smallest failed gap (None: none failed yet)."""
        failed = [g for g, ok in self.results.items() if not ok]
        return min(failed) if failed else None

    @property
    def kind(self) -> str:
        """'bracketed' (lo solved, hi failed), 'above' (max_gap solved), 'below' (min_gap failed), or
        'open' (still searching)."""
        lo, hi = self.lo, self.hi
        if lo is not None and hi is not None:
            return "bracketed"
        if lo == self.max_gap:
            return "above"
        if hi == self.min_gap:
            return "below"
        return "open"

    @property
    def done(self) -> bool:
        kind = self.kind
        if kind == "bracketed":
            return self.hi / self.lo <= self.factor or self.hi - self.lo <= 1
        return kind in ("above", "below")

    def next_gap(self) -> int | None:
        """The gap to train next; None when the search is done."""
        if self.done:
            return None
        lo, hi = self.lo, self.hi
        if not self.results:
            return self.start
        if hi is None:  # everything so far solved: grow
            return min(self.max_gap, max(lo + 1, round(lo * self.grow)))
        if lo is None:  # everything so far failed: shrink
            return max(self.min_gap, min(hi - 1, round(hi / self.grow)))
        return min(hi - 1, max(lo + 1, round(math.sqrt(lo * hi))))  # bisect in log(gap)

    def record(self, gap: int, solved: bool) -> None:
        self.results[int(gap)] = bool(solved)

    def text(self) -> str:
        lo, hi, kind = self.lo, self.hi, self.kind
        if kind == "bracketed":
            return f"[{lo}, {hi})"
        if kind == "above":
            return f">= {lo}"
        if kind == "below":
            return f"< {hi}"
        return f">= {lo}" if lo is not None else f"< {hi}" if hi is not None else "?"

    def as_dict(self) -> dict:
        return {"kind": self.kind, "solved_gap": self.lo, "failed_gap": self.hi, "bracket": self.text(),
                "ratio": self.hi / self.lo if self.kind == "bracketed" else None, "done": self.done,
                "tried": [{"gap": g, "solved": ok} for g, ok in self.results.items()]}
