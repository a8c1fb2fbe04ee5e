"""gapbench.analysis.stats against cases worked out by hand."""
import math

import numpy as np
import pandas as pd
import pytest

from gapbench.analysis import stats


def test_t_interval_by_hand():
    ci = stats.t_interval([1.0, 2.0, 3.0])
    # mean 2, s = 1, t_{0.975, 2} = 4.302653 (tables): half-width 4.302653 / sqrt(3)
    assert (ci.mean, ci.n) == (2.0, 3)
    assert ci.half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert ci.lo == pytest.approx(2 - 2.484138, rel=1e-6)
    five = stats.t_interval([0.9, 1.0, 1.0, 1.0, 1.1])  # s = sqrt(0.005), t_{0.975, 4} = 2.776445
    assert five.half == pytest.approx(2.776445 * math.sqrt(0.005 / 5), rel=1e-6)
    same = stats.t_interval([0.3, 0.3, 0.3])
    assert same.half == 0.0 and same.lo == same.hi == pytest.approx(0.3)
    one = stats.t_interval([0.5, float("nan")])
    assert one.n == 1 and one.mean == 0.5 and math.isnan(one.half)
    assert stats.t_interval([]).n == 0


def test_permutation_test_by_hand():
    # 3 vs 3: C(6, 3) = 20 splits; only the observed split has a difference as low as -3, so the
    # one-sided tail is 1/20 and the two-sided p-value is 2/20: 3 seeds against 3 can never reach 0.05
    assert stats.permutation_p([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)
    # 5 vs 5 completely apart: 2 / C(10, 5) = 2 / 252
    assert stats.permutation_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    # [1, 2, 4] vs [3, 5, 6]: sums of the first group <= 7 in 2 of 20 splits ({1,2,3}, {1,2,4}) -> 0.2
    assert stats.permutation_p([1, 2, 4], [3, 5, 6]) == pytest.approx(0.2)
    assert stats.permutation_p([1.0, 1.0], [1.0, 1.0]) == 1.0
    assert math.isnan(stats.permutation_p([], [1.0]))


def test_welch_by_hand():
    # [1, 2, 3] vs [4, 5, 6]: t = -3 / sqrt(1/3 + 1/3) = -3.674, df = 4; two-sided p = 0.021312
    assert stats.welch_p([1, 2, 3], [4, 5, 6]) == pytest.approx(0.0213116, rel=1e-4)
    assert stats.welch_p([1, 1], [2, 2]) == 0.0 and stats.welch_p([1, 1], [1, 1]) == 1.0


def test_best_needs_to_beat_every_other_cell():
    lstm, gru, rnn = [0.99, 0.98, 0.99, 1.0, 0.99], [0.5, 0.6, 0.55, 0.45, 0.5], [0.2, 0.1, 0.15, 0.2, 0.1]
    assert stats.beats_all({"lstm": lstm, "gru": gru, "rnn": rnn}, True) == "lstm"
    assert stats.beats_all({"lstm": lstm, "gru": gru, "rnn": rnn}, False) == "rnn"  # lower is better
    # equal up to seed noise: nobody wins
    rng = np.random.default_rng(0)
    a, b = 0.5 + 0.05 * rng.standard_normal(5), 0.5 + 0.05 * rng.standard_normal(5)
    assert stats.beats_all({"a": a, "b": b}, True) is None
    # 3 seeds against 3 can never win at alpha = 0.05 (p >= 0.1)
    assert stats.beats_all({"a": [1.0, 1.0, 1.0], "b": [0.1, 0.1, 0.2]}, True) is None
    # one cell alone, or a rival with a single seed, is not compared
    assert stats.beats_all({"a": lstm}, True) is None
    assert stats.beats_all({"a": lstm, "b": [0.1]}, True) is None


def test_beyond_baseline():
    assert stats.beyond_baseline([0.99, 0.98, 1.0], 0.125, True)
    assert not stats.beyond_baseline([0.13, 0.12, 0.14], 0.125, True)  # interval covers chance
    assert stats.beyond_baseline([1e-4, 2e-4, 1e-4], 1 / 6, False)
    assert not stats.beyond_baseline([0.2], 0.125, True)  # one seed: no interval


def _store(solved_at, seeds, gaps):
    return pd.DataFrame([{"cell": "c", "seed": s, "gap": g, "solved": solved_at(s, g)} for s in seeds for g in gaps])


def test_horizon_fit_by_hand():
    # two gaps fit exactly (two parameters): 4 of 5 solved at gap 10, 2 of 5 at gap 100. The fit's
    # log-odds go from log 4 to log(2/3), linearly in log(gap): 0 at log10(g) = 1 + log4 / (log4 - log(2/3))
    rows = pd.DataFrame([{"seed": s, "gap": g, "solved": s < (4 if g == 10 else 2)} for s in range(5)
                         for g in (10, 100)])
    h = stats.fit_horizon(rows, n_boot=0)
    assert h.kind == "crossed"
    assert h.estimate == pytest.approx(10 ** (1 + math.log(4) / (math.log(4) - math.log(2 / 3))), rel=1e-9)
    assert h.solved == {10: (4, 5), 100: (2, 5)}
    # separated: all seeds solve up to 100 and fail from 200 -> the midpoint in log(gap), sqrt(100 * 200);
    # the interval never resolves finer than the measured gaps either side
    gaps = [10, 20, 50, 100, 200, 500]
    h = stats.fit_horizon(_store(lambda s, g: g <= 100, range(5), gaps))
    assert h.estimate == pytest.approx(math.sqrt(100 * 200)) and (h.lo, h.hi) == (100, 200)
    assert h.text() == "141 [100, 200]"


def test_one_noisy_seed_cannot_move_the_horizon_a_grid_step():
    gaps = [10, 20, 50, 100, 200, 500]
    for n_seeds in (3, 5):
        clean = stats.fit_horizon(_store(lambda s, g: g <= 100, range(n_seeds), gaps))
        # seed 2 fails once at gap 20 although it solves 50 and 100
        noisy = stats.fit_horizon(_store(lambda s, g: g <= 100 and not (s == 2 and g == 20), range(n_seeds), gaps))
        assert noisy.kind == "crossed" and 100 < noisy.estimate < 200, noisy
        assert abs(math.log(noisy.estimate / clean.estimate)) < math.log(2)


def test_horizon_censoring():
    gaps = [10, 100, 1000]
    above = stats.fit_horizon(_store(lambda s, g: True, range(3), gaps))
    assert above.kind == "above" and above.text() == "≥ 1000"
    below = stats.fit_horizon(_store(lambda s, g: False, range(3), gaps))
    assert below.kind == "below" and below.text() == "< 10"
    # mostly solved everywhere, a little worse at the end: the fit does not cross 0.5 inside the gaps
    mostly = stats.fit_horizon(_store(lambda s, g: not (g == 1000 and s == 0), range(4), gaps))
    assert mostly.kind == "above"
    # success rising with the gap is not a horizon
    assert stats.fit_horizon(_store(lambda s, g: g >= 100, range(3), gaps)).kind == "above"
    assert stats.fit_horizon(pd.DataFrame(columns=["seed", "gap", "solved"])).kind == "none"


def test_horizons_frame_per_cell():
    rows = pd.concat([_store(lambda s, g: g <= 100, range(3), [10, 100, 1000]).assign(cell="lstm"),
                      _store(lambda s, g: g <= 10, range(3), [10, 100, 1000]).assign(cell="rnn")])
    h = stats.horizons(rows).set_index("cell")
    assert h.loc["lstm", "estimate"] == pytest.approx(math.sqrt(100 * 1000))
    assert h.loc["rnn", "estimate"] == pytest.approx(math.sqrt(10 * 100))
    assert not h["censored"].any() and (h["n_seeds"] == 3).all()
