"""Job time idle vs with one busy competing process, per thread setting (docs/performance.md).

    python scripts/thread_load.py [--steps 200] [--repeats 2]

Each condition runs `run.py cell=gru gap=10 logger=none` in a fresh process and reads the job's
own wall_s from its row (training + test, no start-up). Idle and loaded runs of one setting are
taken back to back, so their ratio is measured under the same background load.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 180  # a job past this is reported as "> 180 s" (the old default can take 10x longer under load)
SETTINGS = {  # name: (extra environment, extra overrides)
    "default (PASSIVE, all cores)": ({}, []),
    "old default (ACTIVE, all cores)": ({"OMP_WAIT_POLICY": "ACTIVE"}, []),
    "threads=1": ({}, ["threads=1"]),
}


def job_seconds(env: dict, overrides: list[str], steps: int, store: Path) -> float:
    args = [sys.executable, str(ROOT / "run.py"), "cell=gru", "gap=10", "logger=none", "progress=false",
            "probe.at=[]", f"trainer.max_steps={steps}", "trainer.max_time=null", "rerun=true",
            f"results_dir={store}", *overrides]
    try:
        subprocess.run(args, env={**os.environ, **env}, check=True, capture_output=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:  # spin-waiting threads: stop, and report "> TIMEOUT_S"
        return math.inf
    (row,) = [json.loads(p.read_text()) for p in (store / "runs").glob("*.json")]
    return row["wall_s"]


def _s(x: float, unit: str = "") -> str:
    if math.isnan(x) or (math.isinf(x) and unit):
        return "n/a"
    return f"> {TIMEOUT_S} s" if math.isinf(x) else f"{x:.2f}{unit}"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}, cores: {len(os.sched_getaffinity(0))}")
    print("| setting | idle s | one busy process s | loaded / idle |\n|---|---|---|---|")
    for name, (env, overrides) in SETTINGS.items():
        idle, busy = [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as d:
                idle.append(job_seconds(env, overrides, args.steps, Path(d)))
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                with tempfile.TemporaryDirectory() as d:
                    busy.append(job_seconds(env, overrides, args.steps, Path(d)))
            finally:
                spinner.kill()
                spinner.wait()
        print(f"| {name} | {_s(min(idle))} | {_s(min(busy))} | {_s(min(busy) / min(idle), 'x')} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
