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
from gapbench.results import load_runs

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


# -- numbers -------------------------------------------------------------------------------------
def t_half(values):
    """The hand formula: t_{0.975, n-1} s / sqrt(n); t from tables."""
    t = {2: 12.706205, 3: 4.302653, 5: 2.776445}[len(values)]
    return t * np.std(values, ddof=1) / math.sqrt(len(values))


def test_means_intervals_counts_and_excluded_runs(runs):
    s = report.summarize(runs).set_index(["task", "cell", "gap"])
    r = s.loc[("copy", "lstm", 100)]
    assert r["n"] == 3 and r["mean"] == pytest.approx((1.0 + 0.995 + 0.99) / 3)
    assert r["half"] == pytest.approx(t_half([1.0, 0.995, 0.99]), rel=1e-6)
    assert r["lo"] == pytest.approx(r["mean"] - r["half"])
    rnn = s.loc[("copy", "rnn", 1000)]
    assert (rnn["n"], rnn["mean"], rnn["diverged"], rnn["failed"]) == (1, 0.125, 1, 1)
    assert math.isnan(rnn["half"])
    assert s.loc[("adding", "gru", 10)]["baseline"] == pytest.approx(1 / 6)


def test_entry_format():
    assert report.entry(0.5, np.nan, 1) == "0.5000 (n=1)"
    assert report.entry(0.995, 0.005, 3) == "0.9950 ± 0.0050 (n=3)"
    assert report.entry(np.nan, np.nan, 0) == "—"


def test_table_shows_interval_n_and_success(runs):
    copy = report.task_report(runs, "copy", n_boot=0)
    md = report.markdown_table(copy)
    half = t_half([1.0, 0.995, 0.99])
    assert f"0.995 ± {half:.3f} (n=3, solved 3/3)" in md  # one format per column: 3 decimals
    assert "LSTM" in md and "tanh RNN" in md and "*baseline*" in md and "lstm " not in md
    assert "0.125 (n=1, solved 0/1)" in md
    assert "**" not in md, "3 seeds against 3 can never pass the test at 0.05: nothing is bold"
    assert "permutation test" in copy.caption() and "recall accuracy" in copy.caption()


def _five_seed_rows(scores_by_cell, task="copy", metric="recall_acc", higher=True, baseline=1 / 8, **cfg):
    rows = []
    for (cell, gap), scores in scores_by_cell.items():
        for seed, score in enumerate(scores):
            rows.append({"run_id": f"{task}-{cell}-gap{gap}-s{seed}-{len(rows)}", "sweep_id": "five", "task": task,
                         "cell": cell, "gap": gap, "seed": seed, "status": "finished", "steps": 500,
                         "stopped_by": "max_steps", "score_name": metric, "score": score, "higher_is_better": higher,
                         "baseline": baseline, "finished_at": f"2026-11-01T10:{seed:02d}:00+00:00",
                         "cfg.trainer.max_steps": 500, "cfg.cell.name": cell, "cfg.gap": gap, "cfg.seed": seed,
                         "cfg.optim.lr": 1e-3, **cfg})
    return rows


def test_best_only_by_the_test_and_never_near_the_baseline():
    rng = np.random.default_rng(1)
    noise = lambda m: list(m + 0.01 * rng.standard_normal(5))  # noqa: E731
    rows = _five_seed_rows({
        ("lstm", 10): noise(0.98), ("gru", 10): noise(0.60), ("rnn", 10): noise(0.30),     # lstm clearly best
        ("lstm", 100): noise(0.50), ("gru", 100): noise(0.50), ("rnn", 100): noise(0.20),  # tie up to noise
        ("lstm", 1000): noise(0.130), ("gru", 1000): [0.120, 0.121, 0.119, 0.122, 0.120],  # both at chance
        ("rnn", 1000): [0.10, 0.101, 0.099, 0.10, 0.10]})
    rep = report.task_report(pd.DataFrame(rows), "copy", n_boot=0)
    best = rep.summary.set_index(["row", "gap"])["best"]
    assert best[("lstm", 10)] and not best[("gru", 10)]
    assert not best.xs(100, level="gap").any(), "equal up to seed noise: neither is marked"
    assert not best.xs(1000, level="gap").any(), "within noise of the baseline: not marked"
    md = report.markdown_table(rep)
    assert md.count("**") == 2 and "**0.9" in md
    tex = report.latex_table(rep)
    assert tex.count("\\bfseries\\boldmath $") == 1  # bold that survives math mode


def test_two_budgets_are_two_conditions_never_averaged():
    rows = (_five_seed_rows({("lstm", 10): [0.9] * 5, ("gru", 10): [0.8] * 5}, **{"cfg.trainer.max_steps": 2000})
            + _five_seed_rows({("lstm", 10): [0.3] * 5}, **{"cfg.trainer.max_steps": 100}))
    for i, r in enumerate(rows):
        r["run_id"] += f"-{i}"
    reps = report.tables(pd.DataFrame(rows), "copy", n_boot=0)
    assert len(reps) == 2
    by = {r.setting_label: r for r in reps}
    assert set(by) == {"trainer.max_steps=100", "trainer.max_steps=2000"}
    assert by["trainer.max_steps=100"].summary.set_index("row").loc["lstm", "mean"] == pytest.approx(0.3)
    assert by["trainer.max_steps=2000"].summary.set_index("row").loc["lstm", "mean"] == pytest.approx(0.9)
    assert (pd.concat([r.summary for r in reps])["n"] == 5).all()
    with pytest.raises(report.ReportError, match="2 conditions"):
        report.task_report(pd.DataFrame(rows), "copy")


def test_time_capped_runs_are_left_out_and_counted():
    rows = _five_seed_rows({("lstm", 10): [0.9] * 5})
    rows[0]["stopped_by"], rows[0]["score"] = "max_time", 0.2
    rep = report.task_report(pd.DataFrame(rows), "copy", n_boot=0)
    r = rep.summary.iloc[0]
    assert (r["n"], r["mean"], r["time_capped"]) == (4, pytest.approx(0.9), 1)
    assert "max_time" in report.excluded_markdown(rep)
    inc = report.task_report(pd.DataFrame(rows), "copy", n_boot=0, include_time_capped=True).summary.iloc[0]
    assert inc["n"] == 5


def test_horizon_from_all_seeds(runs):
    h = report.task_report(runs, "copy").horizons.set_index("row")
    # lstm solves gaps 10 and 100 with every seed and 1000 with none: the midpoint in log(gap)
    assert h.loc["lstm", "estimate"] == pytest.approx(math.sqrt(100 * 1000))
    assert (h.loc["lstm", "lo"], h.loc["lstm", "hi"]) == (100, 1000)
    # gru: 3/3 at 10, 1/3 at 100 (0.9, 0.95 < 0.99), 0/3 at 1000: the fit crosses 0.5 at the mixed gap
    assert h.loc["gru", "estimate"] == pytest.approx(100)
    assert h.loc["rnn", "text"] == "< 10"  # 0.98 < 0.99 already at gap 10
    add = report.task_report(runs, "adding").horizons.set_index("row")
    assert add.loc["gru", "text"] == "≥ 600"
    assert add.loc["lstm_peephole", "estimate"] == pytest.approx(math.sqrt(100 * 600))
    # lm_word: solved = closes >= 50% of baseline 700 -> own best; rnn best 200 -> threshold 450
    lm = report.task_report(runs, "lm_word").horizons.set_index("row")
    assert lm.loc["rnn", "estimate"] == pytest.approx(math.sqrt(100 * 1000))
    assert lm.loc["lstm", "text"] == "≥ 1000"


def test_unknown_task_and_cell_are_reported():
    rows = _five_seed_rows({("mycell", 10): [0.5] * 5, ("lstm", 10): [0.6] * 5}, task="mytask", metric="acc",
                           baseline=0.1)
    rep = report.task_report(pd.DataFrame(rows), "mytask", n_boot=0)
    assert rep.title == "mytask" and "mycell" in report.markdown_table(rep)
    assert "closes ≥ 50%" in rep.criterion.text


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
        for suffix in (".md", ".tex", "_degradation.png", "_degradation.pdf", "_horizon.md"):
            assert f"{task}{suffix}" in names and (out / f"{task}{suffix}").stat().st_size > 0
        _png_ok(out / f"{task}_degradation.png")
    assert "copy_gradients.png" in names and "copy_gradients.pdf" in names and "adding_gradients.png" not in names
    _png_ok(out / "copy_gradients.png")
    md = (out / "copy.md").read_text()
    assert "Memory horizon" in md and "recall accuracy ≥ 0.99" in md and "copy_gradients.png" in md
    assert "| tanh RNN" in md and "diverged" in md  # the excluded-runs table
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
    assert cmp.loc[("copy", "lstm"), "ours"] == report.entry(0.02, t_half([0.01, 0.02, 0.03]), 3)
    assert cmp.loc[("copy", "rnn"), "ours"] == "0.01000 (n=1)"  # only seed 0 finished
    assert cmp.loc[("adding", "gru"), "ours"] == report.entry(4 / 3 * 1e-4, t_half([1e-4, 2e-4, 1e-4]), 3)
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
    # a fixed id per sweep: a second render resumes the same W&B run (after `wandb sync`) instead of adding one
    import hashlib
    ids = {r.name.split("-", 3)[3] for r in runs}
    sweeps = set(load_runs(res)["sweep_id"].fillna("no-sweep").astype(str))
    assert ids == {"report-" + hashlib.sha256(f"gapbench/{s}".encode()).hexdigest()[:16] for s in sweeps}
    assert all(list(r.glob("run-*.wandb")) for r in runs)
    copy_run = next(r for r in runs if list(r.glob("files/media/table/copy/scores_*.table.json")))
    assert list(copy_run.glob("files/media/table/copy/horizon_*.table.json"))
    assert list(copy_run.glob("files/media/images/copy/score_vs_gap_*.png"))
    import json
    (chart,) = copy_run.glob("files/media/table/copy/score_vs_gap_chart_table_*.table.json")  # interactive chart
    table = json.loads(chart.read_text())
    assert table["columns"] == ["step", "lineKey", "lineVal"] and {r[1] for r in table["data"]} >= {"tanh RNN", "LSTM"}
    assert {k: os.environ.get(k) for k in before} == before  # W&B env restored for the caller
    print(f"wandb offline report: {time.time() - t0:.1f} s")


def test_gap_zero_is_plotted_and_left_out_of_the_log_gap_horizon(tmp_path):
    """seq_mnist's gap 0 (the undelayed task) has no log(gap): symlog axis, fit over gaps > 0."""
    rows = _five_seed_rows({("lstm", 0): [0.97] * 5, ("lstm", 10): [0.96] * 5, ("lstm", 100): [0.5] * 5},
                           task="seq_mnist", metric="acc", baseline=0.1, wall_s=10.0)
    written = report.write_report(pd.DataFrame(rows), tmp_path)
    assert (tmp_path / "seq_mnist_degradation.png") in written
    _png_ok(tmp_path / "seq_mnist_degradation.png")
    rep = report.task_report(pd.DataFrame(rows), "seq_mnist", n_boot=50)
    h = rep.horizons.set_index(rep.horizons.columns[0]).iloc[0]
    assert 10 <= h["estimate"] <= 100


def test_stop_when_solved_rows_are_judged_on_validation_and_plotted(tmp_path):
    # solved_at_step set <=> the job met the criterion on validation; its test MSE may lie just above
    rows = _five_seed_rows({("gru", 10): [0.0018] * 5, ("gru", 40): [0.1] * 5,
                            ("lstm", 10): [0.001] * 5, ("lstm", 20): [0.001] * 5, ("lstm", 40): [0.1] * 5},
                           task="adding", metric="mse", higher=False, baseline=1 / 6, **{"cfg.stop_when_solved": True})
    for r in rows:
        r.update(solved_at_step=300 if r["gap"] < 40 else None, wall_s=5.0)
    rep = report.task_report(pd.DataFrame(rows), "adding")
    assert rep.summary.set_index(["row", "gap"]).loc[("gru", 10), "solved"] == 5
    assert "judged on the validation split" in rep.caption()
    written = {p.name for p in report.write_report(pd.DataFrame(rows), tmp_path)}
    assert {"adding_steps_to_solve.png", "adding_steps_to_solve.pdf", "horizons.png", "horizons.pdf"} <= written
    _png_ok(tmp_path / "adding_steps_to_solve.png")
    _png_ok(tmp_path / "horizons.png")
    assert "[horizons.png](horizons.png)" in (tmp_path / "index.md").read_text()


def test_lowercased_translation_bleu_is_said_in_the_report(tmp_path):
    rows = _five_seed_rows({("gru", 10): [20.0, 21.0, 22.0, 23.0, 24.0]}, task="translation", metric="bleu",
                           higher=True, baseline=0.0, **{"cfg.task.lowercase": True})
    report.write_report(pd.DataFrame(rows).assign(wall_s=1.0), tmp_path)
    assert "BLEU **lowercased**" in (tmp_path / "translation.md").read_text()
    rows = [{**r, "cfg.task.lowercase": False} for r in rows]
    report.write_report(pd.DataFrame(rows).assign(wall_s=1.0), tmp_path / "cased")
    assert "lowercased" not in (tmp_path / "cased" / "translation.md").read_text()


def test_a_model_keeps_its_colour_in_every_panel_of_the_horizons_figure():
    cells = ["rnn", "gru", "gru_cho", "lstm", "lstm_peephole", "lstm_cifg", "tcn", "transformer", "mingru",
             "minlstm", "indrnn", "exprnn"]  # > 10 cells: tab20, assigned by position
    many = _five_seed_rows({(c, 10): [0.001] * 5 for c in cells}, task="adding", metric="mse", higher=False,
                           baseline=1 / 6)
    few = _five_seed_rows({(c, 10): [0.9] * 5 for c in ["gru", "lstm"]}, task="copy", metric="recall_acc",
                          baseline=0.125)
    reps = [report.task_report(pd.DataFrame(many), "adding", n_boot=0),
            report.task_report(pd.DataFrame(few), "copy", n_boot=0)]
    union = report.cell_order({c for r in reps for c in r.cells})
    a, b = (report._row_colors(r, union) for r in reps)
    assert a["gru"] == b["gru"] and a["lstm"] == b["lstm"] and a["gru"] != a["lstm"]


def test_captions_state_the_budget_and_the_rate_with_a_grid_edge_flag_and_files_read():
    """Every caption says max_steps and hidden size; the rate shows even when all rows share it, flagged
    at the grid's edge; one number format for all gap columns; readable file stems."""
    rows = []
    for lr, (lstm, gru) in {1e-3: (0.5, 0.6), 1e-2: (0.9, 0.7), 3e-2: (0.2, 0.3)}.items():
        for r in _five_seed_rows({("lstm", 10): [lstm] * 5, ("gru", 10): [gru] * 5, ("lstm", 100): [1e-4] * 5,
                                  ("gru", 100): [2e-4] * 5}, **{"cfg.optim.lr": lr, "cfg.cell.hidden_size": 64}):
            rows.append({**r, "run_id": r["run_id"] + f"-{lr}", "val_score": r["score"]})
    (rep,) = report.tables(pd.DataFrame(rows), "copy", n_boot=0)
    assert "500 training steps, hidden size 64" in rep.caption()
    assert rep.lr_text("lstm") == "0.01" and rep.lr_text("gru") == "0.01"
    md = report.markdown_table(rep)
    assert "| lr" in md.splitlines()[0]
    baseline = md.splitlines()[-1]
    assert baseline.count("1.2e-01") == 2, baseline  # one format for the row, scientific as the 1e-4 means need
    edge = [{**r, "val_score": r["score"] if r["cfg.optim.lr"] != 3e-2 else 0.0} for r in rows
            if r["cfg.optim.lr"] != 1e-3]
    (rep,) = report.tables(pd.DataFrame(edge), "copy", n_boot=0)
    assert rep.lr_text("lstm") == "0.01 (grid edge)" and "grid edge" in rep.caption()
    two = _five_seed_rows({("lstm", 10): [0.9] * 5}, **{"cfg.trainer.max_steps": 2000}) + \
        [{**r, "run_id": r["run_id"] + "-b"} for r in _five_seed_rows({("lstm", 10): [0.3] * 5})]
    assert sorted(r.slug for r in report.tables(pd.DataFrame(two), "copy", n_boot=0)) == [
        "copy-max_steps-2000", "copy-max_steps-500"]
