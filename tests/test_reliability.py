"""Promises of docs/reliability.md: bad input refused in one line, resume after SIGKILL, skip finished."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gapbench.config.preflight import check_command_line
from gapbench.results import load_runs

from conftest import ROOT

CONF = ROOT / "conf"

BAD_INPUT = [  # (command-line arguments, what the one line must say)
    (["cell=foo"], "unknown cell 'foo'; valid: " + ", ".join(sorted(p.stem for p in (CONF / "cell").glob("*.yaml")))),
    (["task=bar"], "unknown task 'bar'; valid: adding, assoc_recall, copy"),
    (["logger=tensorboard"], "unknown logger 'tensorboard'; valid: csv, none, wandb"),
    (["hydra/launcher=ray"], "unknown launcher 'ray'; valid: basic, joblib"),
    (["gap=0"], "gap=0 is out of range; gap must be an integer >= 1"),
    (["gap=-5"], "gap=-5 is out of range"),
    (["gap=abc"], "gap='abc' is not an integer"),
    (["gap=2.5"], "gap=2.5 is not an integer"),
    (["task=adding", "gap=1"], "gap=1 is out of range; gap must be an integer >= 2"),
    (["gap=100000000"], "needs ~"),  # activations of backpropagation through time exceed RAM
    (["cell.hidden_size=0"], "cell.hidden_size=0 is out of range"),
    (["task.batch_size=-1"], "task.batch_size=-1 is out of range"),
    (["seed=-1"], "seed=-1 is out of range"),
    (["trainer.max_steps=0"], "trainer.max_steps=0 is out of range"),
    (["results_dir=/etc/hostname"], "results_dir=/etc/hostname is not a directory"),
    (["results_dir=/etc/hostname/sub"], "cannot be created"),
    (["results_dir="], "results_dir='' is not a path"),
    (["foo=1"], "unknown config key 'foo'"),
    (["cell=rnn", "+cell.forget_bias=1.0"], "cell 'rnn' has no option 'forget_bias'; its options: layers, dropout"),
    (["cell=gru_cho", "cell.impl=foo"], "cell.impl='foo' is invalid for cell 'gru_cho'; valid: one of bptt, autograd"),
    (["cell.forget_bias=abc"], "cell.forget_bias='abc' is invalid for cell 'lstm'; valid: a number"),
    (["cell.layers=0"], "cell.layers=0 is invalid; valid: an integer >= 1"),
    (["cell.dropout=1.5"], "cell.dropout=1.5 is invalid; valid: a number >= 0 and < 1"),
    (["+task.colour=red"], "task copy has no option colour; its options: val_size, test_size"),
    (["cell.hiden_size=64"], "unknown config key 'cell.hiden_size'"),
    (["logger=wandb", "wandb.mode=online"], "wandb.mode=online needs W&B credentials"),
    (["wandb.mode=sometimes"], "unknown wandb.mode 'sometimes'; valid: offline, online, disabled"),
    (["probe.at=[2.0]"], "probe.at=[2.0] is invalid"),
    (["progress=0"], "progress=0 is out of range; progress must be an integer >= 1 (steps between progress-bar redraws), or false"),
    (["-m", "cell=lstm,gru", "gap=10,0"], "gap=0 is out of range"),
    (["-m", "cell=glob(lstm*)", "gap=0"], "gap=0 is out of range"),  # a glob() sweep expands, no traceback
    (["-m", "cell=tcn,lstm", "task=translation", "gap=10"], "cell tcn cannot run task translation: the task needs"),
    (["-m", "seed=0,1", "trainer.strategy=ddp", "trainer.devices=2"], "trainer.strategy=ddp inside a local multirun"),
    (["-m", "experiment=cpu_copy", "cell.hidden_size=-3"], "cell.hidden_size=-3 is out of range"),
    # optimiser
    (["optim.lr=nan"], "optim.lr=nan is out of range; optim.lr must be a finite number in (0, inf)"),
    (["optim.lr=inf"], "optim.lr=inf is out of range"),
    (["optim.lr=0"], "optim.lr=0 is out of range"),
    (["optim.lr=-0.1"], "optim.lr=-0.1 is out of range"),
    (["optim.lr=fast"], "optim.lr='fast' is not a number"),
    (["optim.weight_decay=-1"], "optim.weight_decay=-1 is out of range; optim.weight_decay must be a finite number in [0, inf)"),
    (["optim.weight_decay=nan"], "optim.weight_decay=nan is out of range"),
    # Lightning Trainer: names from its signature, values by rule or by building one
    (["trainer.max_time=abc"], "trainer.max_time='abc' is not a duration; use DD:HH:MM:SS"),
    (["trainer.max_time=00:10:00"], "trainer.max_time='00:10:00' is not a duration"),
    (["trainer.devices=0"], "trainer.devices=0 is invalid"),
    (["trainer.devices=-2"], "trainer.devices=-2 is invalid"),
    (["trainer.precision=17"], "trainer.precision=17 is invalid: Precision 17 is invalid"),
    (["trainer.strategy=foo"], "trainer.strategy='foo' is invalid"),
    (["+trainer.gradient_clip_algorithm=foo"], "trainer.gradient_clip_algorithm='foo' is invalid"),
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1 is out of range"),
    (["trainer.val_check_interval=0"], "trainer.val_check_interval=0 is out of range"),
    (["trainer.val_check_interval=1.5"], "trainer.val_check_interval=1.5 is out of range"),
    (["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps=0 is out of range"),
    (["+trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches=0 is out of range"),
    (["trainer.num_sanity_val_steps=-2"], "trainer.num_sanity_val_steps=-2 is out of range"),
    (["trainer.check_val_every_n_epoch=0"], "trainer.check_val_every_n_epoch=0 is out of range"),
    (["trainer.deterministic=maybe"], "unknown trainer.deterministic 'maybe'; valid: true, false, warn"),
    (["trainer.max_steps=abc"], "trainer.max_steps='abc' is not an integer"),
    (["+trainer.foo=1"], "trainer.foo is not an argument of Lightning's Trainer"),
    (["+trainer.max_epoch=3"], "did you mean max_epochs"),
    (["+trainer.logger=false"], "trainer.logger is set by gapbench; use logger=wandb|csv|none"),
    (["+trainer.enable_checkpointing=false"], "trainer.enable_checkpointing is set by gapbench"),
    (["+trainer.default_root_dir=/tmp"], "trainer.default_root_dir is set by gapbench; use results_dir"),
    # task sizes, from the task's own option defaults
    (["task.test_size=0"], "task.test_size=0 is out of range; task.test_size must be an integer >= 1"),
    (["task.val_size=-1"], "task.val_size=-1 is out of range"),
    (["task.eval_batch_size=0"], "task.eval_batch_size=0 is out of range"),
    (["task.test_size=1.5"], "task.test_size=1.5 is not an integer"),
    (["task.batch_size=abc"], "task.batch_size='abc' is not an integer"),
    # the rest of the config
    (["seed=4294967296"], "seed=4294967296 is out of range; seed must be an integer in [0, 4294967295]"),
    (["gap=true"], "gap=True is not an integer"),
    (["rerun=maybe"], "rerun='maybe' is not a boolean; rerun must be true or false"),
    (["checkpoint_every=0"], "checkpoint_every=0 is out of range"),
    (["threads=0"], "threads=0 is out of range"),
    (["cell.hidden_size=100000"], "parameters with gradients and Adam state"),  # fits as activations, not as weights
    (["wandb.project="], "wandb.project='' is not a W&B project name"),
    (["wandb.project=a/b"], "wandb.project='a/b' is not a W&B project name"),
    # additions: only keys gapbench or Lightning reads
    (["+foo=1"], "+foo is not a key gapbench reads"),
    (["+optim.momentum=0.9"], "+optim.momentum is not a key gapbench reads"),
    (["+wandb.tags=[a]"], "+wandb.tags is not a key gapbench reads"),
    (["++probe.every=3"], "+probe.every is not a key gapbench reads"),
    # launchers
    (["-m", "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs=0 is invalid"),
    # sweeps: every value of every swept key, without expanding the product
    (["-m", "seed=range(0,3000)", "cell=lstm,gru", "gap=10,5,0"], "gap=0 is out of range"),
    (["-m", "task=copy,adding", "gap=5,1"], "gap=1 is out of range; gap must be an integer >= 2"),
    (["-m", "optim.lr=1e-3,nan"], "optim.lr=nan is out of range"),
    (["-m", "task.batch_size=8,64", "cell.hidden_size=8,60000", "gap=5,10"], "needs ~"),  # the largest together
    (["-m", "seed=0,1", "trainer.precision=32-true,17"], "trainer.precision=17 is invalid"),
    (["-m", "cell=rnn,lstm", "+cell.forget_bias=0.5"], "cell 'rnn' has no option 'forget_bias'"),
]
if not __import__("torch").cuda.is_available():
    BAD_INPUT.append((["trainer.accelerator=gpu"], "trainer.accelerator=gpu but no CUDA GPU is visible on this machine"))


@pytest.mark.parametrize("args,expected", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_table(args, expected, monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    if not any(a.startswith("results_dir") for a in args):
        args = [*args, f"results_dir={tmp_path}/store"]
    before = sorted(p.name for p in Path.cwd().iterdir())
    problem = check_command_line(args, CONF)
    assert problem is not None and expected in problem, problem
    assert "\n" not in problem
    assert not (tmp_path / "store").exists()
    assert sorted(p.name for p in Path.cwd().iterdir()) == before, "nothing written where it runs either"


def test_bad_input_table_has_at_least_50_cases():
    assert len(BAD_INPUT) >= 50


def test_large_sweep_checked_in_seconds(tmp_path):
    """3,000 jobs (1,000 seeds x 3 gaps): every value checked, the product never expanded."""
    t0 = time.perf_counter()
    assert check_command_line(["-m", "seed=range(0,1000)", "gap=5,10,20", "cell=lstm,gru",
                               f"results_dir={tmp_path}"], CONF) is None
    assert time.perf_counter() - t0 < 30


def test_good_sweep_passes_preflight(tmp_path):
    assert check_command_line(["-m", "cell=lstm,gru,rnn", "gap=10,100", "task=adding", "hydra/launcher=joblib",
                               f"results_dir={tmp_path}"], CONF) is None


@pytest.mark.slow
def test_killed_job_resumes_with_one_row_and_full_step_count(tmp_path):
    args = [sys.executable, str(ROOT / "run.py"), f"results_dir={tmp_path}", "progress=false", "gap=20",
            "trainer.max_steps=1500", "trainer.max_time=null", "checkpoint_every=100", "task.test_size=128",
            "task.val_size=64", "trainer.val_check_interval=500", "cell.hidden_size=16", "threads=1"]
    env = {**os.environ, "WANDB_MODE": "offline"}
    job = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(tmp_path.glob("jobs/*/last.ckpt")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert list(tmp_path.glob("jobs/*/last.ckpt")), "a checkpoint was written before the kill"
    assert len(load_runs(tmp_path)) == 0, "killed before the end: no row yet"

    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming" in done.stderr + done.stdout
    df = load_runs(tmp_path)
    assert len(df) == 1 and df.steps[0] == 1500 and df.status[0] == "finished"
    run_dirs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 2 and len({d.name.rsplit("-", 1)[1] for d in run_dirs}) == 1, \
        "the resumed job continues the same W&B run id"


@pytest.mark.slow
def test_rerunning_a_finished_sweep_adds_no_row(cli, tmp_path):
    args = ["-m", "cell=lstm,gru", "gap=5,10", "trainer.max_steps=10", f"results_dir={tmp_path}", "progress=false",
            "logger=none", "task.test_size=64", "task.val_size=64"]
    assert cli(*args).returncode == 0
    first = load_runs(tmp_path)
    again = cli(*args)
    assert again.returncode == 0
    assert again.stderr.count("skip ") + again.stdout.count("skip ") == 4
    second = load_runs(tmp_path)
    assert len(first) == len(second) == 4
    assert sorted(first.finished_at) == sorted(second.finished_at)


@pytest.mark.slow
def test_no_secret_in_anything_written(tmp_path):
    secret = "gapbench-test-secret-0123456789abcdef0123"
    env = {**os.environ, "WANDB_API_KEY": secret, "WANDB_MODE": "offline"}
    r = subprocess.run([sys.executable, str(ROOT / "run.py"), f"results_dir={tmp_path}", "progress=false",
                        "gap=3", "trainer.max_steps=5", "task.test_size=32", "task.val_size=32"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert secret not in r.stdout + r.stderr
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files) and len(load_runs(tmp_path)) == 1
    for p in files:
        assert secret.encode() not in p.read_bytes(), f"secret written to {p}"


SWEEP = ["-m", "cell=lstm,gru", "gap=4", "cell.hidden_size=8", "trainer.max_time=null", "probe.at=[]",
         "task.val_size=32", "task.test_size=32", "task.eval_batch_size=32", "progress=false", "threads=1"]


def _wandb_ids(results_dir: Path) -> list[str]:
    return sorted({d.name.rsplit("-", 1)[1] for d in (results_dir / "wandb").glob("offline-run-*")})


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM], ids=["SIGTERM"])  # SIGINT: same handler (signals.forward_to_workers); per job in test_lifecycle
def test_signal_to_a_joblib_sweep_stops_its_workers_and_a_rerun_finishes_every_job(tmp_path, signum):
    # a budget no job finishes before the signal, which goes out once both have a checkpoint (step 20)
    args = [sys.executable, str(ROOT / "run.py"), *SWEEP, "trainer.max_steps=1500", "checkpoint_every=20",
            "trainer.val_check_interval=200", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"results_dir={tmp_path}"]
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_WAIT_POLICY": "PASSIVE"}
    sweep = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while len(list(tmp_path.glob("jobs/*/last.ckpt"))) < 2 and time.time() < deadline:
        time.sleep(0.2)
    sweep.send_signal(signum)
    err, _ = sweep.communicate(timeout=180)
    assert sweep.returncode == 128 + signum, err[-2000:]
    assert err.count("run the same command to resume") >= 3, err[-2000:]  # the sweep's line and each job's
    assert "interrupted by" in err and "Traceback" not in err
    time.sleep(0.5)
    orphans = subprocess.run(["pgrep", "-f", f"results_dir={tmp_path}"], capture_output=True, text=True).stdout
    assert not orphans.strip(), "no worker goes on after its sweep"
    assert len(load_runs(tmp_path)) == 0

    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    df = load_runs(tmp_path)
    assert len(df) == 2 and (df.steps == 1500).all() and (df.status == "finished").all()
    assert len(_wandb_ids(tmp_path)) == 2, "one W&B run id per job, continued on resume"


@pytest.mark.slow
def test_two_simultaneous_starts_of_one_sweep_train_each_job_once(tmp_path):
    args = [sys.executable, str(ROOT / "run.py"), *SWEEP, "seed=0,1", "trainer.max_steps=60", f"results_dir={tmp_path}"]
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_WAIT_POLICY": "PASSIVE"}
    first, second = (subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                     for _ in range(2))
    errs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert first.returncode == second.returncode == 0, errs
    df = load_runs(tmp_path)
    assert len(df) == 4 and (df.steps == 60).all()
    assert len(list((tmp_path / "runs" / "replaced").glob("*.json"))) == 0, "no job written twice"
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 4, "each job trained (and logged) once"
    assert "".join(errs).count("running elsewhere") + "".join(errs).count("skip ") >= 1
