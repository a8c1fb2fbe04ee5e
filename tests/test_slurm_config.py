"""The SLURM launcher's defaults and checks, and what a SLURM sweep shows, without a cluster
(tests/test_slurm.py runs jobs on one)."""
import pytest

from gapbench.sweep.slurm import failure_reason, gpus_per_node, launcher_problem
from gapbench.config.preflight import check_command_line
from conftest import ROOT

GOOD = {"timeout_min": 120, "cpus_per_task": 1, "mem_gb": 4, "tasks_per_node": 1, "nodes": 1,
        "array_parallelism": 64, "gpus_per_node": None, "signal_delay_s": 120}


@pytest.mark.parametrize("accelerator, devices, gpus", [("auto", 1, None), ("cpu", 4, None), ("gpu", 2, 2),
                                                         ("cuda", "auto", 1), ("gpu", [0, 1], 2)])
def test_gpus_only_when_the_trainer_asks(accelerator, devices, gpus):
    assert gpus_per_node(accelerator, devices) == gpus


@pytest.mark.parametrize("change, says", [({"cpus_per_task": 0}, "cpus_per_task=0 is invalid"),
                                          ({"mem_gb": -1}, "mem_gb=-1"), ({"timeout_min": 1.5}, "timeout_min=1.5"),
                                          ({"gpus_per_node": -1}, "gpus_per_node=-1"),
                                          ({"timeout_min": 2}, "not longer than hydra.launcher.signal_delay_s=120")])
def test_launcher_values_that_cannot_work_are_one_line(change, says):
    problem = launcher_problem({**GOOD, **change})
    assert problem and says in problem and "\n" not in problem
    assert launcher_problem(GOOD) is None and launcher_problem({**GOOD, "gpus_per_node": 0}) is None


def test_failure_reason_is_the_jobs_own_line():
    out = "[gapbench][INFO] - start x\nerror: gap=-1 is out of range; gap must be >= 1\n"
    err = "Traceback (most recent call last):\n  File ...\nRuntimeError: boom\nsrun: error: vm: task 0: Exited"
    assert failure_reason(out, err) == "gap=-1 is out of range; gap must be >= 1"
    assert failure_reason("", err) == "RuntimeError: boom"
    assert failure_reason("", "") is None
    stopped = "[2026-12-04 15:00:00,000][gapbench][WARNING] - copy-x interrupted by SIGTERM at step 61; run the same command to resume"
    assert failure_reason(stopped, err) == stopped.split("] - ")[1]


def test_preflight_refuses_bad_launcher_values_and_takes_the_defaults():
    base = ["-m", "hydra/launcher=slurm", "cell=lstm,gru"]
    assert check_command_line(base, ROOT / "conf") is None
    assert "cpus_per_task=0" in check_command_line(base + ["hydra.launcher.cpus_per_task=0"], ROOT / "conf")
    assert "signal_delay_s" in check_command_line(base + ["hydra.launcher.timeout_min=1"], ROOT / "conf")


def test_slurm_jobs_are_judged_by_what_the_launcher_requests(monkeypatch):
    """Memory and GPUs of the job's node, not of the (here: pretended 1 GiB, GPU-less) submitting machine."""
    from gapbench.config import validate
    from gapbench.sweep import slurm

    monkeypatch.setattr(validate, "_available_here", lambda: 2**30)
    monkeypatch.setattr(slurm, "node_limits", lambda partition: None)  # no sinfo: nodes not checked
    big = ["-m", "hydra/launcher=slurm", "cell=lstm", "gap=500", "cell.hidden_size=2048"]  # needs ~3 GiB
    assert "1.0 GiB is available on this machine" in check_command_line(big[2:], ROOT / "conf")  # a plain run
    assert check_command_line(big + ["hydra.launcher.mem_gb=8"], ROOT / "conf") is None
    refused = check_command_line(big + ["hydra.launcher.mem_gb=2"], ROOT / "conf")
    assert "2.0 GiB is available on the job's node (hydra.launcher.mem_gb=2)" in refused, refused
    gpu = ["-m", "hydra/launcher=slurm", "trainer.accelerator=gpu"]
    assert check_command_line(gpu, ROOT / "conf") is None  # gpus_per_node follows the trainer: 1
    refused = check_command_line(gpu + ["hydra.launcher.gpus_per_node=0"], ROOT / "conf")
    assert "no CUDA GPU is visible on the job's node (hydra.launcher.gpus_per_node=0)" in refused, refused


def test_more_than_a_node_has_is_refused(monkeypatch):
    from gapbench.sweep import slurm

    monkeypatch.setattr(slurm, "node_limits", lambda partition: {"cpus": 2, "mem_mb": 20000, "gpus": 0})
    assert "cpus_per_task=4 asks for 4 CPUs per node but the largest node" in launcher_problem({**GOOD, "cpus_per_task": 4})
    assert "mem_gb=32" in launcher_problem({**GOOD, "mem_gb": 32})
    assert "GPUs" in launcher_problem({**GOOD, "gpus_per_node": 1})
    assert launcher_problem({**GOOD, "cpus_per_task": 2, "mem_gb": 16}) is None


def _job_config(sweep_dir, num=0):
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    return OmegaConf.create({"gap": 10, "seed": 0, "cell": {"name": "gru"}, "task": {"name": "copy"},
                             "hydra": {"mode": RunMode.MULTIRUN, "sweep": {"dir": str(sweep_dir)}, "job": {"num": num}}})


def test_sweep_progress_one_line_per_job_under_ddp_and_full_rows(tmp_path, monkeypatch):
    from hydra.core.utils import JobReturn, JobStatus

    from gapbench.sweep import progress as sweep_progress

    progress = sweep_progress.SweepProgress()
    done = JobReturn(status=JobStatus.COMPLETED)
    for rank in ("0", "1"):  # the two processes of one DDP job
        monkeypatch.setenv("SLURM_PROCID", rank)
        sweep_progress.job_finished({"run_id": "copy-gru-gap10-s0-x", "status": "running elsewhere"})
        progress.on_job_end(_job_config(tmp_path), done)
    rows = sweep_progress.read_progress(tmp_path)
    assert len(rows) == 1, rows
    assert (rows[0]["task"], rows[0]["cell"], rows[0]["gap"], rows[0]["status"]) == ("copy", "gru", 10, "running elsewhere")


def test_wall_clock_counts_every_segment():
    from gapbench.train.jobstate import WallClock

    first = WallClock()
    saved = first.state_dict()
    resumed, continued = WallClock(), WallClock(earlier=False)
    resumed.load_state_dict({"wall_s": 100.0}), continued.load_state_dict({"wall_s": 100.0})
    assert saved["wall_s"] < 5 and 100 <= resumed.seconds() < 105 and continued.seconds() < 5
