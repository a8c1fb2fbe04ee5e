"""A researcher's daily use: help, thread cap, sweep progress (in-process parts; run.py ones in test_run)."""
import logging
import resource
import subprocess
import sys

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from gapbench.config import expand_user_paths
from gapbench.config import help as gb_help
from gapbench.sweep import progress as sweep_progress
from gapbench.config.preflight import check_command_line

from conftest import ROOT

CONF = ROOT / "conf"


def test_help_is_fast_and_lists_every_group_and_every_key():
    probe = ("import runpy, sys\nsys.argv = ['run.py', '--help']\ntry:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
             "except SystemExit:\n    pass\nprint('HEAVY', sorted({'torch', 'lightning', 'wandb'} & set(sys.modules)))")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    assert r.returncode == 0 and not r.stderr
    assert "HEAVY []" in r.stdout, "--help imports none of torch, Lightning, W&B"
    # CPU seconds, not wall: the shared test machine's load would make a wall-clock bound flaky
    assert cpu < 2, f"--help took {cpu:.1f} CPU s"
    for group in ("cell", "task", "logger", "trainer", "experiment", "debug"):
        line = next(line for line in r.stdout.splitlines() if line.strip().startswith(f"{group}="))
        assert all(p.stem in line for p in (CONF / group).glob("*.yaml")), line
    launchers = next(line for line in r.stdout.splitlines() if line.strip().startswith("hydra/launcher="))
    assert all(name in launchers for name in ("basic", "joblib", "slurm", "submitit_local"))
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = OmegaConf.to_container(compose(config_name="config"))
    documented = {key: doc for key, _, doc in gb_help.documented_keys()}
    leaves = [k for k, v in cfg.items() if not isinstance(v, dict)]
    leaves += [f"{k}.{kk}" for k, v in cfg.items() if isinstance(v, dict) and k in ("probe", "optim", "wandb")
               for kk in v]
    for key in leaves:
        assert documented.get(key), f"top-level key {key} has no one-line meaning in conf/config.yaml"
        assert f"  {key}=" in r.stdout


def test_eval_and_ckpt_path_refused_alone(tmp_path):
    assert "needs ckpt_path" in check_command_line(["eval_only=true", f"results_dir={tmp_path}"], CONF)
    assert "only with eval_only=true" in check_command_line(["ckpt_path=x.ckpt", f"results_dir={tmp_path}"], CONF)
    assert check_command_line(["debug=fast", f"results_dir={tmp_path}"], CONF) is None


def test_threads_above_the_cores_are_capped_with_one_line(caplog):
    from gapbench.train.job import _threads, cpu_cores

    caplog.set_level(logging.WARNING, logger="gapbench")
    assert _threads(OmegaConf.create({"threads": 999})) == cpu_cores()
    assert len(caplog.records) == 1 and "capped" in caplog.text


def test_sweep_job_count_and_name():
    def multirun(*overrides):
        from hydra.core.global_hydra import GlobalHydra
        from hydra.types import RunMode

        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):  # the config a multirun starts with
            return GlobalHydra.instance().config_loader().load_configuration(
                "config", list(overrides), run_mode=RunMode.MULTIRUN)

    cfg = multirun("cell=lstm,gru", "gap=10,20,50")
    assert sweep_progress.count_jobs(cfg) == 6 and sweep_progress.sweep_name(cfg) == "cell-gap"
    cfg = multirun("experiment=cpu_copy", "seed=0")
    assert sweep_progress.count_jobs(cfg) == 24 and sweep_progress.sweep_name(cfg) == "cpu_copy"
    cfg = multirun("hydra/sweeper=horizon", "task=adding", "cell=lstm,gru")
    assert sweep_progress.count_jobs(cfg) is None, "the horizon sweeper picks its jobs round by round"
    rows = [{"job": 2, "task": "copy", "cell": "gru", "gap": 10, "seed": 0, "status": "finished", "score": 0.5,
             "baseline": 0.125, "steps": 20, "wall_s": 65.0}, {"job": 1, "status": "failed"}]
    text = sweep_progress.table(rows)
    assert text.index("failed") < text.index("gru") and "1:05" in text
    assert sweep_progress.sweep_name(cfg) == "cell" and sweep_progress.swept_keys(cfg) == ["cell", "gap"]
    rows = [{**rows[0], "job": 1, "status": "skipped (finished)", "swept": {"optim.lr": "0.001"}},
            {**rows[0], "swept": {"optim.lr": "0.01"}}]
    lines = sweep_progress.table(rows, ["cell", "optim.lr"]).splitlines()
    assert lines[0].split()[:7] == ["job", "task", "cell", "gap", "seed", "optim.lr", "status"]
    assert lines[2].split()[5:8] == ["0.001", "skipped", "(finished)"] and lines[3].split()[5:7] == ["0.01", "finished"]


def test_a_job_whose_stdout_is_not_a_terminal_logs_plain_progress_lines(tmp_path, caplog, capsys):
    """Under pytest stdout is not a terminal, as under nohup or SLURM: no bar redraws, ~20 plain lines."""
    from gapbench.train.job import run_job
    from gapbench.train.progress import plain_every

    assert plain_every(10, 20000) == 1000 and plain_every(10, 50) == 10
    caplog.set_level(logging.INFO, logger="gapbench")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"results_dir={tmp_path}", "logger=none", "threads=1", "gap=4",
                                                       "cell.hidden_size=8", "trainer.max_steps=40", "progress=10",
                                                       "task.val_size=32", "task.test_size=64", "probe.at=[]"])
    run_job(cfg)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("train ")]
    assert [line.split()[1] for line in lines] == ["10/40", "20/40", "30/40", "40/40"]
    assert "steps/s" in lines[0] and "ETA" in lines[0]
    out = capsys.readouterr()
    assert "\r" not in out.out + out.err and "Validation DataLoader" not in out.out + out.err


def test_preflight_reads_config_dir_and_config_name_as_hydra_does(tmp_path):
    (tmp_path / "cell").mkdir()
    (tmp_path / "cell" / "mycell.yaml").write_text("name: gru\nhidden_size: 7\nlayers: 1\ndropout: 0.0\n")
    (tmp_path / "mine.yaml").write_text("defaults:\n  - config\n  - _self_\ngap: 7\n")
    for flags in (["--config-dir", str(tmp_path)], [f"--config-dir={tmp_path}"], ["-cd", str(tmp_path)]):
        assert check_command_line([*flags, "cell=mycell"], CONF) is None, flags
        assert check_command_line([*flags, "--config-name", "mine", "cell=mycell", "gap=3"], CONF) is None
    assert "unknown cell 'mycell'" in check_command_line(["cell=mycell"], CONF)
    assert "is not a directory" in check_command_line(["--config-dir", str(tmp_path / "nope")], CONF)
    assert "no config nope.yaml" in check_command_line(["--config-name", "nope"], CONF)


def test_the_help_lists_group_keys_and_its_examples_parse():
    import shlex

    from gapbench.results import cli as results_cli

    text = gb_help.render()
    for key in ("trainer.max_steps=20000", "cell.hidden_size=128", "task.test_size=", "hydra.sweeper.factor=",
                "+trainer.KEY=VALUE", "cell=NAME --cfg job --package cell"):
        assert key in text, key
    examples = [shlex.split(line.split("#")[0]) for line in text.split("Examples:")[1].splitlines()
                if line.strip().startswith("python ")]
    assert len(examples) >= 8
    for argv in examples:
        if argv[1] == "run.py" and "RUN_ID" in " ".join(argv):  # a placeholder path: preflight wants a real file
            problem = check_command_line(argv[2:], CONF)
            assert problem.startswith("ckpt_path=results/jobs/RUN_ID/last.ckpt is not a file"), problem
        elif argv[1] == "run.py":
            assert check_command_line(argv[2:], CONF) is None, argv
        elif argv[2] == "gapbench.results":
            results_cli.build_parser().parse_args(argv[3:])  # argparse exits 2 on a bad example
        else:
            assert argv[2] == "gapbench.report"


def test_paths_as_users_type_them(monkeypatch):
    monkeypatch.setenv("HOME", "/home/me")
    monkeypatch.setenv("DATA", "/data")
    assert expand_user_paths(["results_dir=~/store", "task.path=$DATA/jsb.mat", "+ckpt_path=${HOME}/x.ckpt",
                              "gap=10", "wandb.project=~x", "-m"]) == \
        ["results_dir=/home/me/store", "task.path=/data/jsb.mat", "+ckpt_path=/home/me/x.ckpt", "gap=10",
         "wandb.project=~x", "-m"]
