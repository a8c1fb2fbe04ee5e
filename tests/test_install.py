"""A non-editable install works from any folder: the wheel carries the code, the configs and the data.

The fresh environment borrows this one's third-party packages (torch, Lightning, Hydra: a path
line in a .pth file) but none of its .pth hooks, so the editable gapbench of the test environment
is invisible there and only the wheel's copy can be imported.
"""
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def run(*cmd, cwd, env=None):
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))}: exit {done.returncode}\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done


def test_a_wheel_runs_a_job_and_a_report_from_another_folder(tmp_path):
    source = tmp_path / "source"  # built from a copy: setuptools writes build/ and *.egg-info where it builds
    source.mkdir()
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, source / part)
    for part in ("src", "tasks", "conf", "hydra_plugins"):
        shutil.copytree(ROOT / part, source / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", source,
        "-w", tmp_path / "dist", cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("gapbench-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    purelib = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).stdout.strip())
    borrowed = [p for p in [*site.getsitepackages(), sysconfig.get_paths()["purelib"]] if Path(p).is_dir()]
    (purelib / "borrowed_test_env.pth").write_text("\n".join(dict.fromkeys(borrowed)) + "\n")
    run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", purelib, wheel, cwd=tmp_path)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = run(python, "-c", "import gapbench.config, gapbench.tasks; print(gapbench.config.CONF); "
                "print(gapbench.tasks.__file__)", cwd=elsewhere, env=env).stdout.split()
    assert all(Path(p).is_relative_to(purelib) for p in where), where

    run(python, "-m", "gapbench", "trainer.max_steps=5", "results_dir=store", "logger=none", "progress=false",
        "probe.at=[]", "cell.hidden_size=8", "task.val_size=32", "task.test_size=32", "threads=1",
        cwd=elsewhere, env=env)
    run(python, "-m", "gapbench.report", "--results", "store", "--out", "report", cwd=elsewhere, env=env)
    assert len(list((elsewhere / "store" / "runs").glob("*.json"))) == 1
    assert "copy" in (elsewhere / "report" / "index.md").read_text()
    assert not (ROOT / "store").exists() and not (ROOT / "report").exists()
