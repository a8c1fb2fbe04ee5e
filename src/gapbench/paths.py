"""Paths a command will write, checked before it does any work; each problem is one line.

Names that become file names (`sweep_id`, run ids, `--sweep`) must stay one plain name inside the
store. Folders are tested by creating (and removing) a file in them, not with `os.access`, which
says yes on read-only mounts, under root, and to ACLs it cannot read. Imports nothing heavy:
tools check their arguments before torch or pandas load.
"""
from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

DISK_MARGIN_BYTES = 64 * 2**20  # free space kept beyond what a job is estimated to write
_UMASK = os.umask(0o022)
os.umask(_UMASK)


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


def output_file_problem(path, label: str, makes_folder: bool = False) -> str | None:
    """None if a file can be written at `path`: not a folder, its folder writable (and existing,
    unless the writer makes it: `makes_folder`)."""
    p = Path(path).expanduser()
    if p.is_dir():
        return f"{label} is a directory; give a file name in it, e.g. {p / 'out'}"
    if not makes_folder and not p.absolute().parent.is_dir():
        return f"{label}: its folder {p.parent} does not exist"
    return folder_problem(p.absolute().parent, f"{label}: its folder {p.parent}")


def free_bytes(folder) -> int | None:
    """Free space on the filesystem that holds (or will hold) `folder`; None if unknown."""
    try:
        return shutil.disk_usage(_existing_ancestor(Path(folder).expanduser().absolute())).free
    except OSError:
        return None


def space_problem(folder, need_bytes: int, what: str, free: int | None = None) -> str | None:
    free = free_bytes(folder) if free is None else free
    if free is None or free >= need_bytes + DISK_MARGIN_BYTES:
        return None
    return (f"{what} {folder} has {size(free)} free; this job needs ~{size(need_bytes)} (its checkpoints while "
            f"one is saved) plus a {size(DISK_MARGIN_BYTES)} margin; free some space or give another results_dir")


def size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


def is_disk_full(e: BaseException | None) -> bool:
    """ENOSPC/EDQUOT, also where a library re-raised it as another error (torch.save: a RuntimeError)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


class DiskFull(OSError):
    """A write failed for want of space: one line naming the folder and the space needed."""

    def __init__(self, path: Path, need_bytes: int):
        self.path, self.need_bytes = Path(path), need_bytes
        free = free_bytes(self.path.parent)
        super().__init__(errno.ENOSPC, f"disk full: {self.path.parent} has {size(free or 0)} free; writing "
                                       f"{self.path.name} needs ~{size(need_bytes)} more; free some "
                                       "space and run the same command again (finished work and the last checkpoint "
                                       "are kept)")

    def __str__(self) -> str:
        return self.strerror


# -- atomic files -----------------------------------------------------------------------------

def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a directory; the rename is still atomic
        pass
    finally:
        os.close(fd)


def _link_over(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.{secrets.token_hex(4)}.tmp")
    try:
        os.link(src, tmp)
        os.replace(tmp, dst)
    except OSError:  # no hard links here: keep no previous file rather than copy one
        tmp.unlink(missing_ok=True)


def atomic_write(path: Path, write: Callable[[Any], None], keep_previous: Path | None = None) -> None:
    """`write(f)` fills a temporary file in `path`'s folder (never `$TMPDIR`), made with the umask's
    permissions like any other file; it is fsynced and renamed onto `path`, so a kill at any moment
    leaves the old file or the new one. `keep_previous`: hard-link the file being replaced there first.
    A full disk raises DiskFull (the old file stays); the temporary file is removed either way."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; a plain open would honour the umask
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous is not None and path.exists():
            _link_over(path, Path(keep_previous))
        os.replace(tmp, path)
    except BaseException as e:
        written = Path(tmp).stat().st_size if Path(tmp).exists() else 0
        Path(tmp).unlink(missing_ok=True)
        if is_disk_full(e) and not isinstance(e, DiskFull):
            previous = path.stat().st_size if path.exists() else 0
            raise DiskFull(path, max(previous, written) - written + 1) from None
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1, allow_nan=True, default=str).encode()))


def remove_stale_temps(folder: Path, name: str) -> list[Path]:
    """Temporary files a killed write of `folder/name` left behind (atomic_write's `.<name>.*.tmp`).
    Call only while no other process can be writing `name` (a job holds its lock)."""
    gone = []
    for tmp in Path(folder).glob(f".{name}.*.tmp"):
        try:
            tmp.unlink()
            gone.append(tmp)
        except OSError:
            pass
    return gone
