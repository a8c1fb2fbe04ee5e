"""Continue a finished job to a larger step budget instead of training again from step 0.

A job whose config equals a finished, stored job's in everything but a larger trainer.max_steps
starts from that job's last.ckpt (Lightning restores weights, optimizer and step counter). It is
its own condition: its own run_id and row, with `continued_from` = the earlier run's id and
`continued_from_step` = its steps. Training batches depend only on (seed, step), so the continued
job sees the batches a job trained from step 0 to the larger budget would see.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

from gapbench import results


def find_parent(results_dir: Path, config: dict[str, Any], run_id: str,
                config_hash: Callable[[dict], str]) -> dict[str, Any] | None:
    """The finished row (with `checkpoint`) of the longest earlier job this one continues, or None."""
    prefix = run_id.rsplit("-", 1)[0]  # task-cell-gapG-sS
    max_steps = int(config["trainer"]["max_steps"])
    best = None
    for path in sorted((Path(results_dir) / results.RUNS).glob(f"{prefix}-*.json")):
        try:
            row = json.loads(path.read_text())
        except (ValueError, OSError):
            continue
        if (row.get("run_id") == run_id or row.get("status") != "finished" or row.get("stopped_by") != "max_steps"
                or not isinstance(row.get("steps"), int) or row["steps"] >= max_steps):
            continue
        earlier = copy.deepcopy(config)
        earlier["trainer"]["max_steps"] = row["steps"]
        ckpt = Path(results_dir) / "jobs" / row["run_id"] / "last.ckpt"
        if config_hash(earlier) == row.get("config_hash") and ckpt.exists():
            if best is None or row["steps"] > best["steps"]:
                best = {**row, "checkpoint": str(ckpt)}
    return best
