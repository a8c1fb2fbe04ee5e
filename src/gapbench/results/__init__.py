"""The local results store: one JSON file per run under <results_dir>/runs/, merged on read.

One file per run makes appends safe across processes and machines sharing a filesystem: each
record is written to a temporary file and atomically renamed into place, so a reader sees a
whole record or none. Every reader (report, `results ls/show/compare/export`, the tools) reads
through `load_runs` / `read_row`: a file it cannot use (torn, not JSON, missing task/cell/gap/seed,
a non-numeric gap or score) is named in one warning line and listed in `df.attrs["corrupt"]`;
two files holding the same run id (a copied `X (1).json`) count once, named in one line and
listed in `df.attrs["duplicates"]`.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from gapbench import paths
from gapbench import quiet

RUNS = "runs"
CURVES = "curves"
REPLACED = "replaced"
SWEEPS = "sweeps"  # <sweep_id>.reused: the finished runs of earlier sweeps a sweep reused, one run_id a line

COLUMNS = ["run_id", "sweep_id", "task", "cell", "gap", "seed", "status", "steps", "wall_s",
           "score_name", "score", "higher_is_better", "test_loss", "baseline",
           "started_at", "finished_at", "device", "torch_version", "config_hash"]


class CorruptRecord(UserWarning):
    pass


quiet.one_line_warnings(CorruptRecord)


class UnusableRecord(ValueError):
    """A row file no reader can use; the message says why."""


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


# what every reader relies on: (field, required, test, what it must be)
ROW_FIELDS = [("run_id", True, lambda v: isinstance(v, str) and v != "", "a name"),
              ("task", True, lambda v: isinstance(v, str) and v != "", "a task name"),
              ("cell", True, lambda v: isinstance(v, str) and v != "", "a cell name"),
              ("gap", True, _is_int, "an integer"),
              ("seed", False, lambda v: v is None or _is_int(v), "an integer"),
              ("status", False, lambda v: v is None or isinstance(v, str), "a string"),
              ("score", False, _is_number, "a number or null")]


def check_row(row) -> None:
    if not isinstance(row, dict):
        raise UnusableRecord("not a run record (not a JSON object)")
    for key, required, ok, what in ROW_FIELDS:
        if key not in row:
            if required:
                raise UnusableRecord(f"no {key}")
        elif not ok(row[key]):
            raise UnusableRecord(f"{key}={row[key]!r} is not {what}")


def read_row(path: Path) -> dict[str, Any]:
    """One row file, checked (check_row); UnusableRecord says why it cannot be used."""
    try:
        row = json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise UnusableRecord(f"not valid JSON ({str(e).splitlines()[0]})") from None
    except OSError as e:
        raise UnusableRecord(f"unreadable ({e.strerror or e})") from None
    check_row(row)
    return row


_atomic_write_json = paths.atomic_write_json  # one file per row, written atomically with the umask's permissions


def run_path(results_dir, run_id: str) -> Path:
    problem = paths.name_problem("run_id", run_id)
    if problem:  # ids are made of checked names (task, cell, gap, seed, hash); a row never lands outside runs/
        raise ValueError(problem)
    return Path(results_dir) / RUNS / f"{run_id}.json"


def append_run(results_dir, row: dict[str, Any]) -> Path:
    """Store one run's row. A row already stored under the same run_id (a `rerun=true`) is kept
    under runs/replaced/ rather than lost."""
    path = run_path(results_dir, row["run_id"])
    if path.exists():
        keep = path.parent / REPLACED / f"{row['run_id']}.{time.strftime('%Y%m%dT%H%M%S')}.{os.getpid()}.json"
        keep.parent.mkdir(parents=True, exist_ok=True)
        try:  # a link, not a move: if the new row cannot be written (a full disk), the old one stays in runs/
            os.link(path, keep)
        except OSError:
            shutil.copy2(path, keep)
    _atomic_write_json(path, row)
    return path


def read_run(results_dir, run_id: str) -> dict[str, Any] | None:
    path = run_path(results_dir, run_id)
    if not path.exists():
        return None
    try:
        return read_row(path)
    except UnusableRecord as e:
        warnings.warn(f"unusable results record {path}: {e}; treated as not finished", CorruptRecord, stacklevel=2)
        return None


def _read_records(folder: Path) -> tuple[list[dict], list[str], list[str]]:
    """(usable rows, unusable files, duplicate files): a run id stored in two files is read once,
    from <run_id>.json where that is one of them."""
    rows: dict[str, dict] = {}
    files: dict[str, list[Path]] = {}
    corrupt = []
    for path in sorted(folder.glob("*.json")):
        try:
            row = read_row(path)
        except UnusableRecord as e:
            corrupt.append(str(path))
            warnings.warn(f"skipping unusable results record {path}: {e}", CorruptRecord, stacklevel=3)
            continue
        files.setdefault(row["run_id"], []).append(path)
        if row["run_id"] not in rows or path.name == f"{row['run_id']}.json":
            rows[row["run_id"]] = row
    duplicates = []
    for run_id, found in files.items():
        if len(found) > 1:
            kept = next((p for p in found if p.name == f"{run_id}.json"), found[0])
            others = [str(p) for p in found if p != kept]
            duplicates += others
            warnings.warn(f"run {run_id} is stored {len(found)} times; reading {kept}, not {', '.join(others)}",
                          CorruptRecord, stacklevel=3)
    return list(rows.values()), corrupt, duplicates


def load_runs(results_dir="results") -> pd.DataFrame:
    """All runs of a results directory as a DataFrame, one row per run (see COLUMNS, plus
    `test/<metric>` and the flattened config as `cfg.<key>`)."""
    rows, corrupt, duplicates = _read_records(Path(results_dir) / RUNS)
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df:
            df[col] = pd.Series(dtype=object)
    df = df[COLUMNS + [c for c in df.columns if c not in COLUMNS]]
    df.attrs["corrupt"] = corrupt
    df.attrs["duplicates"] = duplicates
    return df.reset_index(drop=True)


def append_curve(results_dir, run_id: str, records: list[dict[str, Any]]) -> Path:
    """Store a run's per-time-step curves (gradient norms, ...) beside its row."""
    path = run_path(results_dir, run_id).parent.parent / CURVES / f"{run_id}.json"
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


def note_reuse(results_dir, sweep_id: str, run_id: str) -> None:
    """Record that sweep `sweep_id` reused the finished run `run_id` (stored under an earlier sweep's id)
    instead of training it again, so that selecting the sweep (`of_sweeps`) includes it."""
    path = Path(results_dir) / SWEEPS / f"{sweep_id}.reused"
    path.parent.mkdir(parents=True, exist_ok=True)
    if run_id in reused_by(results_dir, sweep_id):
        return
    with open(path, "a") as f:  # one short line per write: O_APPEND keeps parallel jobs' lines whole
        f.write(run_id + "\n")


def reused_by(results_dir, sweep_id: str) -> list[str]:
    try:
        return [line for line in (Path(results_dir) / SWEEPS / f"{sweep_id}.reused").read_text().splitlines() if line]
    except FileNotFoundError:
        return []


def of_sweeps(df: pd.DataFrame, results_dir, sweeps) -> pd.DataFrame:
    """The rows of these sweeps: those they trained, and the finished runs they reused from earlier
    sweeps (listed under the reusing sweep's id, the earlier one in `reused_from`, each row once)."""
    sweeps = [str(s) for s in sweeps]
    own = df[df["sweep_id"].astype(str).isin(sweeps)].copy()
    own["reused_from"] = None
    taken, extra = set(own["run_id"]), []
    by_id = df.set_index("run_id", drop=False)
    for sweep in sweeps:
        for run_id in reused_by(results_dir, sweep):
            if run_id in taken or run_id not in by_id.index:
                continue
            row = by_id.loc[[run_id]].iloc[:1].copy()
            row["reused_from"], row["sweep_id"] = row["sweep_id"], sweep
            extra.append(row)
            taken.add(run_id)
    return pd.concat([own, *extra], ignore_index=True) if extra else own.reset_index(drop=True)


def flatten(cfg: dict, prefix: str = "cfg.") -> dict[str, Any]:
    out = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if not isinstance(value, (list, tuple)) else json.dumps(value)
    return out

