"""What the SLURM path costs per job, from a finished `hydra/launcher=slurm` sweep folder:

    python scripts/slurm_job_cost.py results/hydra/multirun/<sweep>

per job: queued (sacct Submit -> Start, 1 s resolution; a job waiting for a free core counts that
wait too) and startup (Start -> the job's `start <run_id>` line, logged just before Lightning's fit:
Python, torch, Lightning, W&B, task and model set up; the first step follows within a step's time).
Medians over the jobs at the end.
"""
from __future__ import annotations

import datetime as dt
import re
import statistics
import subprocess
import sys
from pathlib import Path

LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)\]\[gapbench\]\[INFO\] - start ")


def _when(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f")


def main(sweep_dir: str) -> None:
    logs = sorted(Path(sweep_dir).glob(".submitit/*/*_log.out"))
    if not logs:
        sys.exit(f"error: no job logs under {sweep_dir}/.submitit; give a hydra/launcher=slurm sweep folder")
    rows = []
    for log in logs:
        job = log.name.rsplit("_log.out", 1)[0].rsplit("_", 1)[0]  # 12_0_0_log.out -> 12_0
        acct = subprocess.run(["sacct", "-X", "-n", "-P", "-j", job, "-o", "Submit,Start"],
                              capture_output=True, text=True).stdout.split()
        starts = [m.group(1) for m in map(LINE.match, log.read_text(errors="replace").splitlines()) if m]
        if not acct or not starts:
            continue
        submit, start = (dt.datetime.fromisoformat(t) for t in acct[-1].split("|"))
        rows.append((job, (start - submit).total_seconds(), (_when(starts[0]) - start).total_seconds()))
    print(f"{'job':>8}  {'queued_s':>8}  {'startup_s':>9}")
    for job, queued, startup in rows:
        print(f"{job:>8}  {queued:8.1f}  {startup:9.1f}")
    if rows:
        print(f"{'median':>8}  {statistics.median(r[1] for r in rows):8.1f}  {statistics.median(r[2] for r in rows):9.1f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/slurm_job_cost.py SWEEP_DIR")
    main(sys.argv[1])
