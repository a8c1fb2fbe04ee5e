"""Evaluation from a checkpoint, continuation to a larger budget, debug runs that store nothing."""
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from gapbench.config.preflight import check_command_line
from gapbench.train.evaluate import CONFIG_KEY, evaluate
from gapbench.train.job import run_job
from gapbench.results import load_runs

CONF = Path(__file__).resolve().parents[1] / "conf"
TINY = ["logger=none", "progress=false", "threads=1", "task.val_size=32", "task.test_size=128", "gap=4", "cell=gru",
        "cell.hidden_size=8", "trainer.val_check_interval=4"]


def make_cfg(results_dir, *overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=[f"results_dir={results_dir}", *TINY, *overrides])


def test_checkpoint_evaluates_to_the_stored_metrics_and_continues_to_a_larger_budget(tmp_path):
    row = run_job(make_cfg(tmp_path, "trainer.max_steps=6"))
    ckpt = tmp_path / "jobs" / row["run_id"] / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)[CONFIG_KEY]["cell"]["name"] == "gru", "the config travels along"
    out = evaluate(ckpt, threads=1)
    assert out["run_id"] == row["run_id"] and out["step"] == 6
    tests = [k for k in row if k.startswith("test/")]
    assert tests and all(out[k] == row[k] for k in tests), "eval reproduces the job's test metrics exactly"

    longer = run_job(make_cfg(tmp_path, "trainer.max_steps=12"))
    assert longer["run_id"] != row["run_id"], "a new condition, its own row"
    assert longer["continued_from"] == row["run_id"] and longer["continued_from_step"] == 6
    assert longer["steps"] == 12 and len(load_runs(tmp_path)) == 2
    fresh = run_job(make_cfg(tmp_path / "fresh", "trainer.max_steps=12"))  # trained from step 0
    assert fresh["continued_from"] is None
    assert all(fresh[k] == longer[k] for k in tests), "continuing = training to the larger budget at once"


@pytest.mark.parametrize("content,why", [(b"", "an empty file"), (b"not a checkpoint\n" * 50, "UnpicklingError")])
def test_a_file_that_is_no_checkpoint_gets_one_line(tmp_path, content, why):
    (tmp_path / "x.ckpt").write_bytes(content)
    problem = check_command_line(["eval_only=true", f"ckpt_path={tmp_path / 'x.ckpt'}", f"results_dir={tmp_path}/store"], CONF)
    assert problem == (f"ckpt_path={tmp_path / 'x.ckpt'} is not a readable checkpoint ({why}); give a job's checkpoint, "
                       "e.g. results/jobs/RUN_ID/last.ckpt")
    assert not (tmp_path / "store").exists()


def test_debug_runs_write_no_row(tmp_path):
    row = run_job(make_cfg(tmp_path, "trainer.max_steps=3", "+trainer.limit_test_batches=1"))
    assert "not stored" in row["status"]
    assert not (tmp_path / "runs").exists() and len(load_runs(tmp_path)) == 0


def test_what_is_not_a_measurement():
    from hydra.core.hydra_config import HydraConfig

    from gapbench.train.measurement import not_a_measurement

    def reason(*overrides):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        try:
            return not_a_measurement(cfg)
        finally:
            HydraConfig.instance().cfg = None  # no Hydra run outside this test

    assert reason() is None and reason("+trainer.limit_test_batches=1.0") is None
    assert reason("debug=fast") == "debug=fast"
    assert reason("+trainer.fast_dev_run=true") == "trainer.fast_dev_run=True"
    assert reason("+trainer.limit_val_batches=1") == "trainer.limit_val_batches=1"
    assert reason("+trainer.overfit_batches=1") == "trainer.overfit_batches=1"


def test_a_checkpoint_evaluates_at_another_gap_seed_and_test_size_or_refuses_in_one_line(tmp_path):
    import pytest

    from gapbench.config.preflight import check_command_line
    from gapbench.config.validate import ConfigError

    row = run_job(make_cfg(tmp_path, "trainer.max_steps=4"))
    ckpt = tmp_path / "jobs" / row["run_id"] / "last.ckpt"
    out = evaluate(ckpt, threads=1, changes={"gap": 8, "seed": 3, "task.test_size": 64})
    assert (out["gap"], out["seed"], out["test_size"], out["step"]) == (8, 3, 64, 4)
    assert out["changed"] == {"gap": 8, "seed": 3, "task.test_size": 64} and 0 <= out["score"] <= 1
    assert len(load_runs(tmp_path)) == 1, "no row stored"

    tf = run_job(make_cfg(tmp_path, "trainer.max_steps=2", "cell=transformer"))
    with pytest.raises(ConfigError, match="weights do not fit the model at gap=8 \\(trained at 4\\)"):
        evaluate(tmp_path / "jobs" / tf["run_id"] / "last.ckpt", threads=1, changes={"gap": 8})
    problem = check_command_line(["eval_only=true", f"ckpt_path={ckpt}", "gap=20", "cell.hidden_size=64"], CONF)
    assert problem.startswith("eval_only=true tests the checkpoint's model as trained") and "cell.hidden_size" in problem
    assert check_command_line(["eval_only=true", f"ckpt_path={ckpt}", "gap=20", "seed=3", "threads=1",
                               "eval_out=x.json"], CONF) is None


def test_debug_overfit_reports_the_training_loss_on_its_one_batch(tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="gapbench")
    row = run_job(make_cfg(tmp_path, "debug=overfit", "trainer.max_steps=40", "cell.hidden_size=32"))
    assert "not stored" in row["status"] and not (tmp_path / "runs").exists()
    assert row["train_loss_last"] < row["train_loss_first"]
    assert "training loss on one repeated batch" in caplog.text and "at step 40" in caplog.text
