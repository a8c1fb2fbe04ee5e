"""The SLURM launcher's defaults and checks, without a cluster (tests/test_slurm.py runs jobs on one)."""
import pytest

from gapbench.cluster import failure_reason, gpus_per_node, launcher_problem
from gapbench.preflight import check_command_line
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


def test_preflight_refuses_bad_launcher_values_and_takes_the_defaults():
    base = ["-m", "hydra/launcher=slurm", "cell=lstm,gru"]
    assert check_command_line(base, ROOT / "conf") is None
    assert "cpus_per_task=0" in check_command_line(base + ["hydra.launcher.cpus_per_task=0"], ROOT / "conf")
    assert "signal_delay_s" in check_command_line(base + ["hydra.launcher.timeout_min=1"], ROOT / "conf")
