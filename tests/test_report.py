"""gapbench.report on a synthetic results store whose numbers are worked out by hand here."""
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gapbench import report

ROOT = Path(__file__).resolve().parents[1]
T_ADD = 1 / 6 * 0.01  # adding: solved at MSE <= 1% of the baseline 1/6

# (task, cell, gap) -> one score per seed; None = that seed diverged, "failed" = it failed
COPY = {
    ("lstm", 10): [1.0, 1.0, 1.0], ("lstm", 100): [1.0, 0.995, 0.99], ("lstm", 1000): [0.5, 0.6, 0.7],
    ("gru", 10): [1.0, 1.0, 1.0], ("gru", 100): [0.9, 0.95, 1.0], ("gru", 1000): [0.2, 0.3, 0.25],
    ("rnn", 10): [0.98, 0.96, 0.97], ("rnn", 100): [0.2, 0.2, 0.2], ("rnn", 1000): [0.125, None, "failed"],
}
ADDING = {
    ("gru", 10): [1e-4, 2e-4, 1e-4], ("gru", 100): [1e-4, 2e-4, 1e-4], ("gru", 600): [1e-4, 2e-4, 1e-4],
    ("lstm_peephole", 10): [1e-4, 1e-4], ("lstm_peephole", 100): [0.001, 0.0015],
    ("lstm_peephole", 600): [0.16, 0.17],
}
LM = {("lstm", 10): [150.0], ("lstm", 100): [120.0], ("lstm", 1000): [110.0],
      ("rnn", 10): [200.0], ("rnn", 100): [400.0], ("rnn", 1000): [650.0]}
TASKS = {"copy": ("recall_acc", True, 1 / 8, COPY), "adding": ("mse", False, 1 / 6, ADDING),
         "lm_word": ("ppl", False, 700.0, LM)}


def synthetic_rows():
    rows = []
    for task, (metric, higher, baseline, table) in TASKS.items():
        for (cell, gap), scores in table.items():
            for seed, score in enumerate(scores):
                status = "failed" if score == "failed" else "diverged" if score is None else "finished"
                value = score if status == "finished" else float("nan")
                rows.append({
                    "run_id": f"{task}-{cell}-gap{gap}-s{seed}-abcdef12", "sweep_id": f"sw_{task}", "task": task,
                    "cell": cell, "gap": gap, "seed": seed, "status": status, "steps": 500, "wall_s": 10.0,
                    "score_name": metric, "score": value, "higher_is_better": higher,
                    "test_loss": 0.01 * (1 + seed) if task == "copy" else value,
                    "baseline": baseline, "started_at": f"2026-11-0{1 + seed}T10:00:00+00:00",
                    "finished_at": f"2026-11-0{1 + seed}T10:05:00+00:00", "device": "cpu x86_64 (2 threads)",
                    "torch_version": "2.13.0+cpu", "config_hash": "abcdef12",
                    f"test/{metric}": value, "test/loss": 0.01 * (1 + seed) if task == "copy" else value,
                    "cfg.trainer.max_steps": 500, "cfg.cell.hidden_size": 128,
                })
    return rows


@pytest.fixture
def runs():
    return pd.DataFrame(synthetic_rows())


def curves_frame():
    rows = []
    for cell, decay in [("rnn", 0.8), ("lstm", 0.999)]:
        for seed in range(3):
            for step in (0, 499):
                for t in range(1020):
                    rows.append({"run_id": f"copy-{cell}-gap1000-s{seed}-abcdef12", "task": "copy", "cell": cell,
                                 "gap": 1000, "seed": seed, "train_step": step, "t": t,
                                 "grad_norm": decay ** (1019 - t) * (2 if step else 1)})
    return pd.DataFrame(rows)


def write_store(path: Path, rows=None, curves=None):
    from gapbench.results import append_curve, append_run
    for row in rows if rows is not None else synthetic_rows():
        append_run(path, row)
    if curves is not None:
        for run_id, g in curves.groupby("run_id"):
            append_curve(path, run_id, g.to_dict("records"))


def lin_log(g0, g1, m0, m1):
    """The hand formula: gap where the margin crosses zero, linear in log(gap)."""
    return math.exp(math.log(g0) + m0 / (m0 - m1) * (math.log(g1) - math.log(g0)))


# -- numbers -------------------------------------------------------------------------------------
def test_means_stds_counts_and_excluded_runs(runs):
    s = report.summarize(runs).set_index(["task", "cell", "gap"])
    r = s.loc[("copy", "lstm", 100)]
    assert r["n"] == 3 and r["mean"] == pytest.approx((1.0 + 0.995 + 0.99) / 3)
    assert r["std"] == pytest.approx(np.std([1.0, 0.995, 0.99], ddof=1))
    rnn = s.loc[("copy", "rnn", 1000)]
    assert (rnn["n"], rnn["mean"], rnn["diverged"], rnn["failed"]) == (1, 0.125, 1, 1)
    assert math.isnan(rnn["std"])
    assert s.loc[("adding", "gru", 10)]["baseline"] == pytest.approx(1 / 6)


def test_entry_format():
    assert report.entry(0.5, np.nan, 1) == "0.5000 (1)"
    assert report.entry(0.995, 0.005, 3) == "0.9950 ± 0.0050 (3)"
    assert report.entry(5.3e-5, 1e-5, 2) == "5.3e-05 ± 1e-05 (2)"
    assert report.entry(np.nan, np.nan, 0) == "—"


def test_best_marking_ties_and_lower_is_better(runs):
    copy = report.task_report(runs, "copy")
    mask = report.best_mask(copy.summary)
    assert mask.loc["lstm", 10] and mask.loc["gru", 10] and not mask.loc["rnn", 10]  # tie: both best
    assert mask.loc["lstm", 100] and not mask.loc["gru", 100]
    md = report.markdown_table(copy)
    assert "**1.000 ± 0 (3)**" in md and md.count("**1.000 ± 0 (3)**") == 2
    assert "0.1250 (1)" in md and "*baseline*" in md and "*0.1250*" in md
    add = report.task_report(runs, "adding")
    amask = report.best_mask(add.summary)
    assert amask.loc["lstm_peephole", 10] and not amask.loc["gru", 10]  # 1e-4 beats 1.33e-4: lower is better
    assert amask.loc["gru", 600]
    assert "↓ lower is better" in add.caption() and "mse" in add.caption()
    assert "↑ higher is better" in copy.caption() and "recall_acc" in copy.caption()


def test_latex_is_booktabs_and_escaped(runs):
    tex = report.latex_table(report.task_report(runs, "adding"))
    for part in ("\\toprule", "\\midrule", "\\bottomrule", "\\begin{tabular}{lrrr}", "lstm\\_peephole",
                 "$\\downarrow$", "\\textit{baseline}", "\\textbf{", "$\\pm$", "\\times10^{-4}"):
        assert part in tex, part
    body = tex.split("\\begin{tabular}")[1]
    assert "lstm_peephole" not in body.replace("lstm\\_peephole", "") and "±" not in tex and "↓" not in tex
    assert report.tex_escape("a_b & 50% #1 {x} $") == "a\\_b \\& 50\\% \\#1 \\{x\\} \\$"


def test_horizon_interpolation_by_hand(runs):
    per = report.seed_horizons(runs, "copy").set_index(["cell", "seed"])
    lstm = [lin_log(100, 1000, 1.0 - 0.99, 0.5 - 0.99), lin_log(100, 1000, 0.995 - 0.99, 0.6 - 0.99), 100.0]
    gru = [lin_log(10, 100, 0.01, 0.9 - 0.99), lin_log(10, 100, 0.01, 0.95 - 0.99),
           lin_log(100, 1000, 0.01, 0.25 - 0.99)]
    assert lstm[0] == pytest.approx(100 * 10 ** 0.02)
    for seed in range(3):
        assert per.loc[("lstm", seed), "kind"] == "crossed"
        assert per.loc[("lstm", seed), "horizon"] == pytest.approx(lstm[seed])
        assert per.loc[("gru", seed), "horizon"] == pytest.approx(gru[seed])
        assert per.loc[("rnn", seed), "kind"] == "below"  # 0.98 < 0.99 already at gap 10
    h = report.horizon_summary(report.seed_horizons(runs, "copy")).set_index("cell")
    assert h.loc["lstm", "mean"] == pytest.approx(np.mean(lstm))
    assert h.loc["lstm", "std"] == pytest.approx(np.std(lstm, ddof=1))
    assert h.loc["lstm", "text"] == "103 ± 2.4 (3)"  # mean 102.6, std 2.38
    assert h.loc["rnn", "text"] == "< 10"


def test_horizon_lower_is_better_never_fails_and_relative_criterion(runs):
    h = report.horizon_summary(report.seed_horizons(runs, "adding")).set_index("cell")
    assert h.loc["gru", "text"] == "≥ 600" and h.loc["gru", "n_above"] == 3
    want = [lin_log(100, 600, T_ADD - 0.001, T_ADD - 0.16), lin_log(100, 600, T_ADD - 0.0015, T_ADD - 0.17)]
    assert h.loc["lstm_peephole", "mean"] == pytest.approx(np.mean(want))
    # lm_word: solved = closes >= 50% of baseline 700 -> own best; rnn best 200 -> threshold 450
    lm = report.horizon_summary(report.seed_horizons(runs, "lm_word")).set_index("cell")
    assert lm.loc["rnn", "mean"] == pytest.approx(lin_log(100, 1000, 450 - 400, 450 - 650))
    assert lm.loc["rnn", "mean"] == pytest.approx(100 * 10 ** 0.2)
    assert lm.loc["rnn", "text"] == "158 (1)"
    assert lm.loc["lstm", "text"] == "≥ 1000"


def test_horizon_mixed_censoring_text():
    per = pd.DataFrame({"cell": ["lstm"] * 3, "seed": [0, 1, 2], "kind": ["crossed", "crossed", "above"],
                        "horizon": [200.0, 300.0, 1000.0], "min_gap": 10, "max_gap": 1000})
    h = report.horizon_summary(per).iloc[0]
    assert h["text"] == "250 ± 71 (2); 1 seed ≥ 1000"  # std of 200, 300 = 70.7
    assert h["per_seed"] == "s0: 200, s1: 300, s2: ≥ 1000"


def test_interpolate_edge_cases():
    assert report.interpolate_horizon([10, 100], [0.1, 0.2]) == ("above", 100.0)
    assert report.interpolate_horizon([10, 100], [-0.1, 0.2]) == ("below", 10.0)
    kind, h = report.interpolate_horizon([10, 100, 1000], [0.0, -1.0, 1.0])  # first failure counts
    assert kind == "crossed" and h == pytest.approx(10.0)


# -- files ---------------------------------------------------------------------------------------
def _png_ok(path: Path):
    import matplotlib.image as mpimg
    assert path.stat().st_size > 0
    img = mpimg.imread(path)
    assert img.ndim == 3 and (img[..., :3] < 0.99).any(), f"{path} is blank"


def test_write_report_files(runs, tmp_path):
    out = tmp_path / "report"
    written = report.write_report(runs, out, curves=curves_frame(), published=report.load_published(),
                                  command="python -m gapbench.report --results R")
    names = {p.name for p in written}
    for task in TASKS:
        for suffix in (".md", ".tex", "_degradation.png", "_horizon.md"):
            assert f"{task}{suffix}" in names and (out / f"{task}{suffix}").stat().st_size > 0
        _png_ok(out / f"{task}_degradation.png")
    assert "copy_gradients.png" in names and "adding_gradients.png" not in names
    _png_ok(out / "copy_gradients.png")
    md = (out / "copy.md").read_text()
    assert "Memory horizon" in md and "recall accuracy ≥ 0.99" in md and "copy_gradients.png" in md
    assert "| rnn" in md and "diverged" in md  # the excluded-runs table
    index = (out / "index.md").read_text()
    for part in ("cpu x86_64 (2 threads)", "2026-11-01 10:00 – 2026-11-03 10:05 UTC", "python -m gapbench.report",
                 "[copy.md](copy.md)", "[published.md](published.md)", "max_steps", "1 diverged", "1 failed"):
        assert part in index, part
    assert "closes ≥ 50%" in (out / "lm_word_horizon.md").read_text()


def test_published_side_by_side(runs):
    pub = report.load_published()
    assert {"task", "gap", "cell", "metric", "value", "source"} <= set(pub.columns)
    assert len(pub) >= 12 and pub["source"].str.contains("1803.01271").all()
    got = pub.set_index(["task", "cell"])["value"]
    assert got[("copy", "gru")] == 0.0197 and got[("adding", "gru")] == 5.3e-5 and got[("lm_word", "rnn")] == 114.5
    diverged = dict(synthetic_rows()[0], run_id="adding-rnn-gap600-s0-x", task="adding", cell="rnn", gap=600,
                    status="diverged", score=float("nan"), score_name="mse", higher_is_better=False)
    runs = pd.concat([runs, pd.DataFrame([diverged])], ignore_index=True)
    cmp = report.published_comparison(runs, pub).set_index(["task", "cell"])
    # copy: compared with our cross-entropy test/loss (0.01, 0.02, 0.03 over seeds), not recall
    assert cmp.loc[("copy", "lstm"), "our column"] == "test/loss"
    assert cmp.loc[("copy", "lstm"), "ours"] == report.entry(0.02, 0.01, 3)
    assert cmp.loc[("copy", "rnn"), "ours"] == "0.01000 (1)"  # only seed 0 finished
    assert cmp.loc[("adding", "gru"), "ours"] == report.entry(4 / 3 * 1e-4, np.std([1e-4, 2e-4, 1e-4], ddof=1), 3)
    assert cmp.loc[("adding", "lstm"), "ours"] == "not run"
    assert cmp.loc[("adding", "rnn"), "ours"] == "not run (1 diverged/failed)"
    assert cmp.loc[("lm_word", "lstm"), "ours"] == "not run"  # we ran gaps 10..1000, not 80
    md = report.published_markdown(report.published_comparison(runs, pub), pub)
    assert "0.0204" in md and "not run" in md and "arXiv:1803.01271" in md


# -- command line --------------------------------------------------------------------------------
@pytest.mark.parametrize("make", ["missing", "empty"])
def test_cli_bad_dir_exits_2_with_one_line(tmp_path, capsys, make):
    d = tmp_path / "res"
    if make == "empty":
        d.mkdir()
    assert report.main(["--results", str(d)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(d) in err


def test_cli_module_entry_point(tmp_path):
    p = subprocess.run([sys.executable, "-m", "gapbench.report", "--results", str(tmp_path / "nope")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    h = subprocess.run([sys.executable, "-m", "gapbench.report", "--help"], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert h.returncode == 0 and "--wandb-mode" in h.stdout and "--results" in h.stdout


def test_cli_on_a_store(tmp_path, capsys):
    res = tmp_path / "results"
    write_store(res, curves=curves_frame())
    assert report.main(["--results", str(res)]) == 0
    out = res / "report"
    assert (out / "index.md").exists() and (out / "copy_gradients.png").exists() and (out / "published.md").exists()
    assert f"--results {res}" in (out / "index.md").read_text()
    assert report.main(["--results", str(res), "--out", str(tmp_path / "o"), "--sweep", "sw_adding"]) == 0
    assert (tmp_path / "o" / "adding.md").exists() and not (tmp_path / "o" / "copy.md").exists()
    assert report.main(["--results", str(res), "--sweep", "nope"]) == 2


@pytest.mark.slow
def test_cli_wandb_offline_writes_under_results(tmp_path, monkeypatch):
    import os
    res = tmp_path / "results"
    write_store(res)
    before = {k: os.environ.get(k) for k in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR")}
    t0 = time.time()
    assert report.main(["--results", str(res), "--wandb", "--wandb-mode", "offline"]) == 0
    runs = sorted((res / "wandb").glob("offline-run-*"))
    assert len(runs) == 3, runs  # one report run per sweep_id
    assert all(list(r.glob("run-*.wandb")) for r in runs)
    copy_run = next(r for r in runs if list(r.glob("files/media/table/copy/scores_*.table.json")))
    assert list(copy_run.glob("files/media/table/copy/horizon_*.table.json"))
    assert list(copy_run.glob("files/media/images/copy/score_vs_gap_*.png"))
    import json
    (chart,) = copy_run.glob("files/media/table/copy/score_vs_gap_chart_table_*.table.json")  # interactive chart
    table = json.loads(chart.read_text())
    assert table["columns"] == ["step", "lineKey", "lineVal"] and {r[1] for r in table["data"]} >= {"rnn", "lstm"}
    assert {k: os.environ.get(k) for k in before} == before  # W&B env restored for the caller
    print(f"wandb offline report: {time.time() - t0:.1f} s")
