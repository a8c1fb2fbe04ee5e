"""Paths a command will write, checked before it does any work; each problem is one line.

Names that become file names (`sweep_id`, run ids, `--sweep`) must stay one plain name inside the
store. Folders are tested by creating (and removing) a file in them, not with `os.access`, which
says yes on read-only mounts, under root, and to ACLs it cannot read. Imports nothing heavy:
tools check their arguments before torch or pandas load.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

DISK_MARGIN_BYTES = 64 * 2**20  # free space kept beyond what a job is estimated to write


def name_problem(key: str, value) -> str | None:
    """None if `value` can be one file name inside the store, else why not (one line)."""
    text = str(value)
    if not text.strip():
        return f"{key}={value!r} is empty; give a plain name, e.g. {key}=my_sweep"
    if "/" in text or "\\" in text or os.path.isabs(text):
        return f"{key}={text} contains a path separator; {key} becomes a file name in the results store: give a plain name without / or \\"
    if text in (".", "..") or text.startswith("."):
        return f"{key}={text} is not a plain name ({key} becomes a file name in the results store); give one not starting with '.'"
    if any(ord(c) < 32 for c in text) or len(text) > 200:
        return f"{key}={text!r} is not a plain name; use at most 200 printable characters without / or \\"
    return None


def _existing_ancestor(path: Path) -> Path:
    for p in [path, *path.parents]:
        if p.is_symlink() and not p.exists():
            raise NotADirectoryError(errno.ENOENT, "a dangling symbolic link (or a loop of links)", str(p))
        if p.exists():
            return p
    return Path("/")


def folder_problem(folder, label: str) -> str | None:
    """None if `folder` is a folder we can create files in, or can be created; else why not, as one
    line starting with `label` (e.g. "results_dir=x"). Tried: a temporary file is created (and
    removed) in the deepest folder that exists."""
    path = Path(folder).expanduser().absolute()
    try:
        base = _existing_ancestor(path)
    except OSError as e:
        return f"{label} cannot be used: {e.filename} is {e.strerror}"
    if not base.is_dir():
        return f"{label} is not a directory" if base == path else f"{label} cannot be created ({base} is not a directory)"
    try:
        fd, tmp = tempfile.mkstemp(dir=base, prefix=".gapbench-write-test.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        if base == path:
            return f"{label} is not writable ({e.strerror or e})"
        return f"{label} cannot be created ({base} is not writable: {e.strerror or e})"
    return None


def output_file_problem(path, label: str) -> str | None:
    """None if a file can be written at `path` (its folder is writable, it is not a folder)."""
    p = Path(path).expanduser()
    if p.is_dir():
        return f"{label} is a directory; give a file name in it, e.g. {p / 'out'}"
    return folder_problem(p.parent, f"{label}: its folder {p.parent}")


def free_bytes(folder) -> int | None:
    """Free space on the filesystem that holds (or will hold) `folder`; None if unknown."""
    try:
        return shutil.disk_usage(_existing_ancestor(Path(folder).expanduser().absolute())).free
    except OSError:
        return None


def space_problem(folder, need_bytes: int, what: str) -> str | None:
    free = free_bytes(folder)
    if free is None or free >= need_bytes + DISK_MARGIN_BYTES:
        return None
    return (f"{what} {folder} has {free / 2**20:.0f} MiB free; this job needs ~{need_bytes / 2**20:.0f} MiB "
            f"(a checkpoint) plus a {DISK_MARGIN_BYTES / 2**20:.0f} MiB margin; free some space or give another results_dir")


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)
