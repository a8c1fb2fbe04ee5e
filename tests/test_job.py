"""run_job in-process: learning, determinism, skip-finished, divergence."""
import logging
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from gapbench.train.job import run_job
from gapbench.results import load_runs

CONF = Path(__file__).resolve().parents[1] / "conf"


def make_cfg(tmp_path, *overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=[
            f"results_dir={tmp_path}", "logger=none", "progress=false", "threads=1",
            "task.val_size=64", "task.test_size=256", *overrides])


@pytest.mark.slow
def test_small_lstm_beats_the_copy_baseline_at_gap_5(tmp_path):
    cfg = make_cfg(tmp_path, "gap=5", "cell.hidden_size=128", "trainer.max_steps=1000", "optim.lr=5e-3",
                   "trainer.val_check_interval=1000", "task.test_size=1024", "probe.at=[]")
    row = run_job(cfg)
    assert row["status"] == "finished" and row["steps"] == 1000
    assert row["test/loss"] < 0.9 * row["test/baseline_loss"], "cross-entropy below the memoryless baseline"
    assert row["score"] > 0.25, f"recall {row['score']} should be well above chance (1/8)"


def test_same_config_and_seed_give_identical_metrics(tmp_path):
    rows = [run_job(make_cfg(tmp_path / str(i), "gap=8", "cell.hidden_size=16", "trainer.max_steps=30"))
            for i in range(2)]
    keys = [k for k in rows[0] if k.startswith("test/")]
    assert keys and all(rows[0][k] == rows[1][k] for k in keys)


def test_finished_job_is_skipped_and_rerun_forces_it(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="gapbench")
    args = ("gap=4", "cell=gru", "cell.hidden_size=8", "trainer.max_steps=5")
    first = run_job(make_cfg(tmp_path, *args))
    again = run_job(make_cfg(tmp_path, *args, "progress=true"))  # presentation keys do not change identity
    assert again["run_id"] == first["run_id"] and again["finished_at"] == first["finished_at"]
    assert "skip" in caplog.text and len(load_runs(tmp_path)) == 1
    forced = run_job(make_cfg(tmp_path, *args, "rerun=true", "progress=2"))  # the bar, redrawn every 2 steps
    assert forced["finished_at"] >= first["finished_at"] and len(load_runs(tmp_path)) == 1
    assert len(list((tmp_path / "runs" / "replaced").glob("*.json"))) == 1, "the replaced row is kept"


def test_divergence_is_recorded_and_does_not_raise(tmp_path, monkeypatch):
    from gapbench.tasks.adding import Adding

    real = Adding.train_batch

    def poisoned_from_step_3(self, step, device):
        x, y = real(self, step, device)
        return (x * float("nan") if step >= 3 else x), y

    monkeypatch.setattr(Adding, "train_batch", poisoned_from_step_3)
    row = run_job(make_cfg(tmp_path, "task=adding", "gap=4", "cell.hidden_size=8", "trainer.max_steps=50"))
    assert row["status"] == "diverged" and row["diverged_at_step"] == 3 and row["stopped_by"] == "diverged"
    assert load_runs(tmp_path).status.tolist() == ["diverged"]


def test_rows_record_validation_and_condition(tmp_path):
    rows = [run_job(make_cfg(tmp_path, "gap=4", "cell=gru", "cell.hidden_size=8", "trainer.max_steps=12",
                             "trainer.val_check_interval=5", f"seed={s}", "probe.at=[]")) for s in (0, 1)]
    for row in rows:
        assert row["val_step"] == 12, "a final validation of the trained model, after the last interval"
        assert row["val_score"] == row["val/recall_acc"] and 0 <= row["val_score"] <= 1
        assert row["stopped_by"] == "max_steps"
    assert rows[0]["condition"] == rows[1]["condition"], "seeds share a condition"
    other = run_job(make_cfg(tmp_path, "gap=4", "cell=gru", "cell.hidden_size=8", "trainer.max_steps=12",
                             "trainer.val_check_interval=5", "probe.at=[]", "optim.lr=0.01"))
    assert other["condition"] != rows[0]["condition"]


def test_learning_rate_protocol_end_to_end(tmp_path):
    """A tiny rate grid: the report selects each cell's rate by validation score and reports test at it."""
    from gapbench import report
    for cell in ("gru", "lstm"):
        for lr in (1e-3, 3e-2):
            for seed in (0, 1):
                run_job(make_cfg(tmp_path, "gap=4", f"cell={cell}", "cell.hidden_size=8", "trainer.max_steps=30",
                                 "trainer.val_check_interval=30", f"optim.lr={lr}", f"seed={seed}", "probe.at=[]"))
    runs = load_runs(tmp_path)
    assert len(runs) == 8 and runs["val_score"].notna().all()
    rep = report.task_report(runs, "copy", n_boot=0)
    assert "selected per cell" in rep.lr_note and "validation" in rep.lr_note
    for cell in ("gru", "lstm"):
        mine = runs[runs["cell"] == cell]
        want = mine.groupby("cfg.optim.lr")["val_score"].mean().idxmax()  # by hand: best mean validation
        got = rep.summary.set_index("row").loc[cell]
        assert got["lr"] == want and got["n"] == 2
        assert got["mean"] == mine[mine["cfg.optim.lr"] == want]["score"].mean()  # test score at that rate
    md = report.markdown_table(rep)
    assert md.splitlines()[0].split("|")[2].strip() == "lr", "the selected rate beside each row"
