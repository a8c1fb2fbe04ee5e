"""The local results store: one JSON file per run under <results_dir>/runs/, merged on read.

One file per run makes appends safe across processes and machines sharing a filesystem: each
record is written to a temporary file and atomically renamed into place, so a reader sees a
whole record or none. A torn or corrupt file is reported with its path and skipped, and counted
in `df.attrs["corrupt"]`.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

RUNS = "runs"
CURVES = "curves"
REPLACED = "replaced"

COLUMNS = ["run_id", "sweep_id", "task", "cell", "gap", "seed", "status", "steps", "wall_s",
           "score_name", "score", "higher_is_better", "test_loss", "baseline",
           "started_at", "finished_at", "device", "torch_version", "config_hash"]


class CorruptRecord(UserWarning):
    pass


def _atomic_write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, allow_nan=True, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_path(results_dir, run_id: str) -> Path:
    return Path(results_dir) / RUNS / f"{run_id}.json"


def append_run(results_dir, row: dict[str, Any]) -> Path:
    """Store one run's row. A row already stored under the same run_id (a `rerun=true`) is kept
    under runs/replaced/ rather than lost."""
    path = run_path(results_dir, row["run_id"])
    if path.exists():
        keep = path.parent / REPLACED / f"{row['run_id']}.{time.strftime('%Y%m%dT%H%M%S')}.{os.getpid()}.json"
        keep.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, keep)
    _atomic_write_json(path, row)
    return path


def read_run(results_dir, run_id: str) -> dict[str, Any] | None:
    path = run_path(results_dir, run_id)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        warnings.warn(f"corrupt results record {path}: {e}; treated as not finished", CorruptRecord, stacklevel=2)
        return None


def _read_records(folder: Path) -> tuple[list[dict], list[str]]:
    rows, corrupt = [], []
    for path in sorted(folder.glob("*.json")):
        try:
            row = json.loads(path.read_text())
            if not isinstance(row, dict) or "run_id" not in row:
                raise ValueError("not a run record (no run_id)")
            rows.append(row)
        except (ValueError, UnicodeDecodeError, OSError) as e:
            corrupt.append(str(path))
            warnings.warn(f"skipping corrupt results record {path}: {e}", CorruptRecord, stacklevel=3)
    return rows, corrupt


def load_runs(results_dir="results") -> pd.DataFrame:
    """All runs of a results directory as a DataFrame, one row per run (see COLUMNS, plus
    `test/<metric>` and the flattened config as `cfg.<key>`)."""
    rows, corrupt = _read_records(Path(results_dir) / RUNS)
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df:
            df[col] = pd.Series(dtype=object)
    df = df[COLUMNS + [c for c in df.columns if c not in COLUMNS]]
    df.attrs["corrupt"] = corrupt
    return df.reset_index(drop=True)


def append_curve(results_dir, run_id: str, records: list[dict[str, Any]]) -> Path:
    """Store a run's per-time-step curves (gradient norms, ...) beside its row."""
    path = Path(results_dir) / CURVES / f"{run_id}.json"
    _atomic_write_json(path, records)
    return path


def load_curves(results_dir="results") -> pd.DataFrame:
    """Long DataFrame of all recorded curves: run_id, task, cell, gap, seed, train_step, t, grad_norm, ..."""
    folder = Path(results_dir) / CURVES
    frames, corrupt = [], []
    for path in sorted(folder.glob("*.json")):
        try:
            frames.append(pd.DataFrame(json.loads(path.read_text())))
        except (ValueError, UnicodeDecodeError, OSError) as e:
            corrupt.append(str(path))
            warnings.warn(f"skipping corrupt curve record {path}: {e}", CorruptRecord, stacklevel=2)
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["run_id", "task", "cell", "gap", "seed", "train_step", "t", "grad_norm"])
    df.attrs["corrupt"] = corrupt
    return df


def flatten(cfg: dict, prefix: str = "cfg.") -> dict[str, Any]:
    out = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if not isinstance(value, (list, tuple)) else json.dumps(value)
    return out

