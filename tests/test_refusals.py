"""Issue 28's red-team cases: no result lost through a name, a typo or a full disk (docs/reliability.md).

Each case: one line naming what was wrong, exit 2 (or as stated), nothing written before the refusal.
"""
import errno
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import pytest
import torch

from gapbench import paths, results
from gapbench.config.preflight import check_command_line
from gapbench.results import CorruptRecord, load_runs

from conftest import ROOT, run_cli

CONF = ROOT / "conf"

REFUSED = [  # (command-line arguments, what the one line must say); {tmp} is the test's folder
    # a typo in an optional group, and null groups
    (["debug=fsat"], "unknown debug 'fsat'; valid: fast, overfit, profiler"),
    (["debug=null"], "debug=null is not a choice: leave debug out for none"),
    (["experiment=null"], "experiment=null is not a choice: leave experiment out for none"),
    (["cell=null"], "cell=null is not a choice: every job needs a cell; valid: "),
    (["task=null"], "task=null is not a choice: every job needs a task"),
    (["-m", "hydra/launcher=null"], "hydra/launcher=null is not a choice: every job needs a launcher"),
    # deleted keys: refused before the job, never a traceback inside it
    (["~gap"], "gap is missing from the config (a ~ override deleted it)"),
    (["~probe"], "probe.at is missing from the config"),
    (["~task.batch_size"], "task.batch_size is missing from the config"),
    (["~trainer.max_steps"], "trainer.max_steps is missing from the config"),
    (["~optim.lr"], "optim.lr is missing from the config"),
    (["+trainer.max_epochs=abc"], "trainer.max_epochs='abc' is not an integer"),
    # sweeps that sweep nothing, or cannot be enumerated, or are not run as sweeps
    (["-m", "cell=glob(x*)"], "cell=glob(x*) sweeps no value (an empty sweep); valid: "),
    (["-m", "gap=range(5,1)"], "gap=range(5,1) sweeps no value"),
    (["-m", "gap=interval(1,5)"], "gap=interval(1,5) is an interval, which only a sampling sweeper"),
    (["gap=range(1,5)"], "gap=range(1,5) is a sweep (one job per value); run it with -m"),
    (["experiment=cpu_copy"], "experiment=cpu_copy is a sweep (120 jobs over seed, gap, cell); run it with -m"),
    # value shapes and budgets
    (["probe.at=0.5"], "probe.at=0.5 is invalid; give fractions"),
    (["probe.at=null"], "probe.at=None is invalid"),
    (["task.test_size=10000000000"], "task.test_size=10000000000 needs ~"),
    (["task.val_size=10000000000"], "task.val_size=10000000000 needs ~"),
    (["trainer.max_time=00:00:00:00"], "trainer.max_time=00:00:00:00 is no time at all"),
    # names that become paths
    (["sweep_id=../runs/x"], "sweep_id=../runs/x contains a path separator"),
    (["sweep_id=../../../x"], "sweep_id=../../../x contains a path separator"),
    (["sweep_id=/tmp/x"], "sweep_id=/tmp/x contains a path separator"),
    (["sweep_id=.."], "sweep_id=.. is not a plain name"),
    (["sweep_id=a\\b"], "contains a path separator"),
    (["-m", "hydra/sweeper=horizon", "gap=3", "hydra.sweeper.max_gap=4", "sweep_id=../runs/x"],
     "sweep_id=../runs/x contains a path separator"),
    # the horizon sweeper's own refusals, in the preflight (before `[HYDRA] sweep` and sweep.json)
    (["-m", "hydra/sweeper=horizon", "task=lm_char"], "task lm_char has no solved criterion"),
    (["-m", "hydra/sweeper=horizon", "gap=3", "hydra.sweeper.max_gap=2"], "gap=3 is not a valid start gap"),
    (["-m", "hydra/sweeper=horizon", "gap=3,5"], "the horizon sweeper chooses the gaps itself"),
    # Hydra keys gapbench does not know
    (["+hydra.callbacks.X._target_=builtins.open", "+hydra.callbacks.X.file=/tmp/x"],
     "+hydra.callbacks.X._target_: gapbench does not take code for Hydra to run"),
    (["hydra.callbacks.progress._target_=builtins.print"], "gapbench does not take code for Hydra to run"),
    (["+hydra.foo=1"], "+hydra.foo is not a Hydra key gapbench uses"),
    (["+hydra.launcher.foo=1"], "+hydra.launcher.foo is not a parameter of the launcher"),
    # folders a job writes
    (["results_dir=/proc/x"], "results_dir=/proc/x cannot be created (/proc is not writable"),
    (["hydra.run.dir=/proc/x"], "hydra.run.dir=/proc/x cannot be created (/proc is not writable"),
    (["-m", "hydra.sweep.dir=/proc/x", "gap=1,2"], "hydra.sweep.dir=/proc/x cannot be created"),
    (["results_dir={tmp}/dangling"], "is a dangling symbolic link"),
    (["results_dir={tmp}/loop"], "is a dangling symbolic link (or a loop of links)"),
    (["results_dir={tmp}/runs_is_a_file"], "runs is not a directory"),
    # eval_only: the checkpoint is checked before Hydra makes its run folder
    (["eval_only=true", "ckpt_path={tmp}/missing.ckpt"], "ckpt_path={tmp}/missing.ckpt is not a file"),
    (["eval_only=true", "ckpt_path={tmp}"], "ckpt_path={tmp} is not a file"),
    (["eval_only=true", "ckpt_path={tmp}/garbage.ckpt"], "is not a readable checkpoint"),
    (["eval_only=true", "ckpt_path={tmp}/no_config.ckpt"], "holds no gapbench config"),
]


@pytest.fixture
def odd_paths(tmp_path):
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "runs_is_a_file").mkdir()
    (tmp_path / "runs_is_a_file" / "runs").write_text("")
    (tmp_path / "garbage.ckpt").write_bytes(b"not a checkpoint")
    torch.save({"state_dict": {}}, tmp_path / "no_config.ckpt")
    return tmp_path


@pytest.mark.parametrize("args,expected", REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_refused_in_one_line_writing_nothing(args, expected, odd_paths, monkeypatch):
    monkeypatch.setenv("NETRC", str(odd_paths / "no-netrc"))
    args = [a.replace("{tmp}", str(odd_paths)) for a in args]
    if not any(a.startswith("results_dir") for a in args):
        args = [*args, f"results_dir={odd_paths}/store"]
    before = sorted(p.name for p in Path.cwd().iterdir())
    inside = sorted(p.name for p in odd_paths.iterdir())
    problem = check_command_line(args, CONF)
    assert problem is not None and expected.replace("{tmp}", str(odd_paths)) in problem, problem
    assert "\n" not in problem
    assert sorted(p.name for p in odd_paths.iterdir()) == inside, "nothing written in the test's folder"
    assert sorted(p.name for p in Path.cwd().iterdir()) == before, "nothing written where it runs"


def test_good_commands_still_pass(tmp_path):
    for args in (["debug=fast", "+trainer.max_epochs=3", "sweep_id=my_sweep-2", "trainer.max_time=00:00:01:00"],
                 ["-m", "hydra/sweeper=horizon", "gap=3", "hydra.sweeper.max_gap=4", "sweep_id=hz"]):
        assert check_command_line([*args, f"results_dir={tmp_path}/store"], CONF) is None, args
    assert not (tmp_path / "store").exists()


def test_a_folder_the_job_writes_is_tried_not_asked(tmp_path, monkeypatch):
    """runs/ exists but creating a file there fails (os.access says yes to root, to read-only mounts, ...)."""
    (tmp_path / "runs").mkdir()
    real = tempfile.mkstemp

    def refuse_in_runs(*a, dir=None, **kw):
        if Path(dir) == tmp_path / "runs":
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(*a, dir=dir, **kw)

    monkeypatch.setattr(paths.tempfile, "mkstemp", refuse_in_runs)
    problem = check_command_line([f"results_dir={tmp_path}"], CONF)
    assert problem == f"{tmp_path}/runs is not writable (Permission denied); give a writable directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits")
def test_a_read_only_runs_folder_is_refused(tmp_path):
    (tmp_path / "runs").mkdir(mode=0o500)
    assert "runs is not writable" in check_command_line([f"results_dir={tmp_path}"], CONF)


def test_too_little_free_disk_for_a_checkpoint_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(paths.shutil, "disk_usage", lambda p: type("U", (), {"free": 2**20})())
    problem = check_command_line([f"results_dir={tmp_path}"], CONF)
    assert problem.startswith(f"results_dir {tmp_path} has 1 MiB free; this job needs ~")
    assert "64 MiB margin" in problem


def test_horizon_sweep_id_cannot_overwrite_a_row_through_run_py(tmp_path):
    """The red team's data loss: `sweep_id=../runs/<id>` wrote the horizons summary over a run's row."""
    row = {"run_id": "copy-lstm-gap3-s0-12345678", "task": "copy", "cell": "lstm", "gap": 3, "seed": 0,
           "status": "finished", "score": 0.5}
    results.append_run(tmp_path, row)
    before = (tmp_path / "runs" / f"{row['run_id']}.json").read_bytes()
    r = run_cli("-m", "hydra/sweeper=horizon", "gap=3", "hydra.sweeper.max_gap=4", f"sweep_id=../runs/{row['run_id']}",
                f"results_dir={tmp_path}", "logger=none", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "sweep_id=../runs/" in r.stderr and "contains a path separator" in r.stderr
    assert "[HYDRA]" not in r.stdout + r.stderr
    assert (tmp_path / "runs" / f"{row['run_id']}.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"], "no hydra/ folder, no sweep.json"


def test_a_malformed_earlier_horizons_file_is_refused_in_the_preflight(tmp_path):
    (tmp_path / "horizons").mkdir()
    (tmp_path / "horizons" / "hz.json").write_text('{"searches": "oops"}')
    problem = check_command_line(["-m", "hydra/sweeper=horizon", "gap=3", "hydra.sweeper.max_gap=4", "sweep_id=hz",
                                  f"results_dir={tmp_path}"], CONF)
    assert "cannot read the earlier horizons of this sweep" in problem and "move it away or fix it" in problem
    (tmp_path / "horizons" / "hz.json").write_text("[1, 2")
    assert "cannot read the earlier horizons" in check_command_line(
        ["-m", "hydra/sweeper=horizon", "gap=3", "sweep_id=hz", f"results_dir={tmp_path}"], CONF)


# -- one store reader: nothing dropped in silence, nothing counted twice ------------------------------
def _row(run_id, **kw):
    return {"run_id": run_id, "task": "copy", "cell": "lstm", "gap": 10, "seed": 0, "status": "finished",
            "score": 0.5, "score_name": "acc", "sweep_id": "s", "config_hash": "h", **kw}


UNUSABLE = [("no_task", {"task": None}, "task=None is not a task name"), ("no_cell", {"cell": ""}, "cell='' is not"),
            ("no_gap", {"gap": None}, "gap=None is not an integer"), ("text_gap", {"gap": "ten"}, "gap='ten' is not"),
            ("text_score", {"score": "high"}, "score='high' is not a number or null"),
            ("bool_seed", {"seed": True}, "seed=True is not an integer")]


def test_unusable_rows_are_named_in_one_line_each_and_never_silently_dropped(tmp_path, capsys):
    results.append_run(tmp_path, _row("good"))
    for name, change, _ in UNUSABLE:
        results.append_run(tmp_path, _row(name, **change))
    del_gap = _row("missing_gap")
    del del_gap["gap"]
    results.append_run(tmp_path, del_gap)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = load_runs(tmp_path)
    assert df.run_id.tolist() == ["good"]
    said = [str(w.message) for w in caught if w.category is CorruptRecord]
    for name, _, why in UNUSABLE:
        assert any(f"{name}.json" in s and why in s for s in said), (name, said)
    assert any("missing_gap.json: no gap" in s for s in said)
    assert len(df.attrs["corrupt"]) == len(UNUSABLE) + 1
    # a CorruptRecord warning prints as one line (not Python's two: message, then the source line)
    text = warnings.formatwarning(said[0], CorruptRecord, __file__, 1)
    assert text == f"warning: {said[0]}\n"


def test_results_cli_names_the_unusable_rows_and_reads_the_rest(tmp_path, capsys):
    from gapbench.results.cli import main

    results.append_run(tmp_path, _row("good"))
    results.append_run(tmp_path, _row("bad", score="high"))
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["ls", "--results", str(tmp_path)]) == 0
        out, err = capsys.readouterr()
        assert "good" in out and "1 run(s)" in err
        assert main(["compare", "--results", str(tmp_path), "--task", "copy"]) == 0  # a string score: no traceback
        assert "0.5 (1)" in capsys.readouterr().out


def test_a_copied_row_file_counts_once_and_is_named_once(tmp_path, capsys):
    from gapbench.results.cli import main

    results.append_run(tmp_path, _row("copy-lstm-gap10-s0-aaaa"))
    results.append_run(tmp_path, _row("copy-lstm-gap10-s1-bbbb", seed=1))
    runs = tmp_path / "runs"
    (runs / "copy-lstm-gap10-s0-aaaa (1).json").write_bytes((runs / "copy-lstm-gap10-s0-aaaa.json").read_bytes())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = load_runs(tmp_path)
    assert sorted(df.run_id) == ["copy-lstm-gap10-s0-aaaa", "copy-lstm-gap10-s1-bbbb"]
    said = [str(w.message) for w in caught]
    assert len(said) == 1 and "run copy-lstm-gap10-s0-aaaa is stored 2 times" in said[0] and "(1).json" in said[0]
    assert df.attrs["duplicates"] == [str(runs / "copy-lstm-gap10-s0-aaaa (1).json")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["compare", "--results", str(tmp_path), "--task", "copy"]) == 0, "no 'differ in config_hash'"
    assert "0.5 (2)" in capsys.readouterr().out


def test_report_counts_every_row_file(tmp_path):
    """index.md's count plus its skipped and duplicate lines account for every file in runs/."""
    from gapbench.report import main

    for seed in range(3):
        results.append_run(tmp_path, _row(f"copy-lstm-gap10-s{seed}-x", seed=seed, cell="lstm"))
    results.append_run(tmp_path, _row("nogap", gap="ten"))
    (tmp_path / "runs" / "copy-lstm-gap10-s0-x (1).json").write_text(
        (tmp_path / "runs" / "copy-lstm-gap10-s0-x.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["--results", str(tmp_path), "--out", str(tmp_path / "report")]) == 0
    index = (tmp_path / "report" / "index.md").read_text()
    assert "**Runs summarised:** 3 " in index
    assert "**Skipped:** 1 unusable record(s)" in index and "nogap.json" in index
    assert "1 duplicate row file(s)" in index and "(1).json" in index


@pytest.mark.parametrize("content,words", [('{"run_id": "x", "ta', "not valid JSON"), ("[1]", "not a JSON object")])
def test_results_show_on_a_torn_row_is_one_line(tmp_path, capsys, content, words):
    from gapbench.results.cli import main

    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "x.json").write_text(content)
    assert main(["show", "x", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err


def test_results_show_refuses_a_path_as_run_id(tmp_path, capsys):
    from gapbench.results.cli import main

    (tmp_path / "runs").mkdir()
    assert main(["show", "../../etc/passwd", "--results", str(tmp_path)]) == 2
    assert "contains a path separator" in capsys.readouterr().err


def test_results_export_to_a_folder_is_refused_before_reading(tmp_path, capsys):
    from gapbench.results.cli import main

    results.append_run(tmp_path, _row("good"))
    assert main(["export", "--results", str(tmp_path), "--csv", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--csv {tmp_path} is a directory" in err
    assert main(["export", "--results", str(tmp_path), "--csv", "/proc/nope/x.csv"]) == 2
    assert "--csv /proc/nope/x.csv: its folder /proc/nope does not exist" in capsys.readouterr().err


# -- tools check their arguments and outputs before the work ----------------------------------------
BENCH_REFUSED = [(["--batch", "0"], "--batch 0 is out of range"), (["--hidden", "-5"], "--hidden -5 is out of range"),
                 (["--time", "0"], "--time 0 is out of range"), (["--repeats", "0"], "--repeats 0 is out of range"),
                 (["--json", "/nonexistent/dir/x.json"], "--json /nonexistent/dir/x.json: its folder /nonexistent/dir does not exist"),
                 (["--json", "/proc/x.json"], "--json /proc/x.json: its folder /proc is not writable"),
                 (["--json", "/tmp"], "--json /tmp is a directory")]
if not torch.cuda.is_available():
    BENCH_REFUSED.append((["--device", "cuda"], "--device cuda but no CUDA GPU is visible"))


@pytest.mark.parametrize("args,words", BENCH_REFUSED, ids=[" ".join(a) for a, _ in BENCH_REFUSED])
def test_bench_checks_its_arguments_before_measuring(args, words, capsys):
    from gapbench.perf import bench

    with pytest.raises(SystemExit) as e:
        bench.parse_args(["--quick", *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and words in err, err


def test_lr_selection_checks_out_before_reading_the_store(tmp_path, capsys):
    from gapbench.analysis import lr_selection

    with pytest.raises(SystemExit) as e:
        lr_selection.main(["--results", str(tmp_path), "--sweep", "s", "--out", "/proc/nope/sel.json"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "--out /proc/nope/sel.json: its folder" in err


@pytest.mark.parametrize("content", ["{not json", '{"factor": 1.5}', '{"factor": 1.5, "max_gap": 8, "searches": [{"task": "copy"}]}',
                                     '{"factor": 1.5, "max_gap": 8, "searches": []}'])
def test_horizon_cost_on_a_corrupt_horizons_file_is_one_line(tmp_path, capsys, content):
    from gapbench.analysis.horizon_cost import main

    (tmp_path / "horizons").mkdir()
    (tmp_path / "horizons" / "hz.json").write_text(content)
    assert main(["--results-dir", str(tmp_path), "--sweep", "hz"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hz.json" in err
    assert main(["--results-dir", str(tmp_path), "--sweep", "../hz"]) == 2
    assert "contains a path separator" in capsys.readouterr().err


# -- a full disk, simulated: one line naming the folder, the old file intact -------------------------
def _enospc(*_, **__):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_names_the_folder_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "runs" / "a.json"
    paths.atomic_write_json(target, {"old": True})

    def half_then_full(f):
        f.write(b"x" * 1000)
        f.flush()
        _enospc()

    with pytest.raises(paths.DiskFull) as e:
        paths.atomic_write(target, half_then_full)
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"disk full: {tmp_path / 'runs'} has ") and "B more; free some space" in message
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in target.parent.iterdir()] == ["a.json"], "no temporary file left"


def test_a_full_disk_inside_torch_save_is_recognised():
    try:
        try:
            _enospc()
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos")  # what torch.save raises
    except RuntimeError as e:
        assert paths.is_disk_full(e)
    assert not paths.is_disk_full(RuntimeError("other"))


def test_a_full_disk_during_a_checkpoint_save_is_one_line_and_a_rerun_resumes(tmp_path, monkeypatch, capsys):
    import sys

    from hydra.core.global_hydra import GlobalHydra

    from gapbench.train import jobstate
    from test_horizon import TINY, load_run_py

    args = ["run.py", "gap=4", "cell.hidden_size=4", "trainer.max_steps=6", "checkpoint_every=2", "trainer.max_time=null",
            f"results_dir={tmp_path}", *TINY]
    real, saves = jobstate.AtomicCheckpointIO.save_checkpoint, []

    def full_at_the_second_save(self, checkpoint, path, storage_options=None):
        saves.append(path)
        if len(saves) == 2:
            jobstate.atomic_write(Path(path), lambda f: (f.write(b"x" * 100), _enospc()))
        return real(self, checkpoint, path, storage_options)

    monkeypatch.setattr(jobstate.AtomicCheckpointIO, "save_checkpoint", full_at_the_second_save)
    monkeypatch.setattr(sys, "argv", args)
    GlobalHydra.instance().clear()
    with pytest.raises(SystemExit) as e:
        load_run_py().main()
    GlobalHydra.instance().clear()
    err = capsys.readouterr().err
    assert e.value.code == 1
    full = [line for line in err.splitlines() if "disk full" in line]
    assert len(full) == 1 and "Traceback" not in err and "/jobs/" in full[0], err
    (job,) = (tmp_path / "jobs").iterdir()
    assert torch.load(job / "last.ckpt", weights_only=True)["global_step"] == 2, "the previous checkpoint is intact"
    assert not list((tmp_path / "runs").glob("*.json")) if (tmp_path / "runs").exists() else True

    monkeypatch.setattr(jobstate.AtomicCheckpointIO, "save_checkpoint", real)
    load_run_py().main()
    GlobalHydra.instance().clear()
    (row,) = load_runs(tmp_path).to_dict("records")
    assert row["steps"] == 6 and row["status"] == "finished"
    assert "resuming from" in capsys.readouterr().out


def test_logging_errors_are_dropped_not_printed_per_line():
    from gapbench.quiet import quiet

    quiet(True)
    assert logging.raiseExceptions is False


# -- hygiene: permissions, stale temporary files, noise --------------------------------------------
def test_rows_get_the_umasks_permissions_like_checkpoints_and_stale_temps_are_cleaned(tmp_path):
    from test_horizon import make_cfg

    from gapbench.train import job

    cfg = make_cfg(tmp_path, "gap=4", "cell.hidden_size=4", "trainer.max_steps=2")
    run_id = job.job_run_id(cfg)
    stale = [tmp_path / "runs" / f".{run_id}.json.abc123.tmp", tmp_path / "jobs" / run_id / ".last.ckpt.def456.tmp"]
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("torn")
    other = tmp_path / "runs" / ".another-run.json.abc123.tmp"  # not this job's: left to its own job
    other.write_text("torn")
    job.run_job(cfg)
    mode = 0o666 & ~paths._UMASK
    assert (tmp_path / "runs" / f"{run_id}.json").stat().st_mode & 0o777 == mode
    assert (tmp_path / "jobs" / run_id / "last.ckpt").stat().st_mode & 0o777 == mode
    assert not any(p.exists() for p in stale) and other.exists()


def test_a_lock_that_is_a_folder_is_one_line(tmp_path):
    from test_horizon import make_cfg

    from gapbench.train import job
    from gapbench.config.validate import ConfigError

    cfg = make_cfg(tmp_path, "gap=4", "cell.hidden_size=4", "trainer.max_steps=2")
    (tmp_path / "jobs" / job.job_run_id(cfg) / ".lock").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"\.lock is a folder where the job keeps its lock file"):
        job.run_job(cfg)


def test_lightnings_srun_hint_is_filtered():
    from lightning.fabric.utilities.warnings import PossibleUserWarning

    from gapbench.quiet import quiet

    quiet(False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn("The `srun` command is available on your system but is not used. HINT: If your intention is "
                      "to run Lightning on SLURM, prepend your python command with `srun` like so: srun python ...",
                      PossibleUserWarning)
    assert caught == []


def test_a_full_disk_during_a_rerun_row_keeps_the_old_row_in_place(tmp_path, monkeypatch):
    results.append_run(tmp_path, _row("a", score=0.1))
    monkeypatch.setattr(paths, "atomic_write", lambda path, write, **kw: _enospc())
    with pytest.raises(OSError):
        results.append_run(tmp_path, _row("a", score=0.9))
    monkeypatch.undo()
    assert load_runs(tmp_path).score.tolist() == [0.1], "the stored row is still read"
