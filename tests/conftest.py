import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Every test means the CPU (the suite must give the same results on a GPU host): no test sees a GPU,
# and the jobs they start (run.py, accelerator=auto) run on the CPU too. The GPU is checked by
# `python -m gapbench.perf.gpu_check` (docs/performance.md), never by a test.
os.environ["CUDA_VISIBLE_DEVICES"] = ""

# W&B must never touch the home directory, in tests as in jobs.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def run_cli(*args: str, cwd=ROOT, timeout=600) -> subprocess.CompletedProcess:
    """`python run.py ARGS` in a subprocess, as a user would type it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") or k in ("WANDB_MODE", "WANDB_SILENT")}
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli
