#!/usr/bin/env bash
# The GPU check (issue 22), sized for a short lease on one GPU: every part of `python -m gapbench.perf.gpu_check`
# (bench of every model vs cuDNN, CPU-vs-CUDA equivalence, the default run, 16 jobs on one GPU, the card's
# sweep, bf16-mixed, run.py's overhead), each timed, the whole within --budget seconds (default 450).
#
#   bash scripts/gpu_check.sh OUT_DIR [gpu_check options]
#
# Writes OUT_DIR/gpu_check.json, gpu_check.md, bench.json. On a host whose Python already has torch,
# Lightning, pandas and matplotlib (as the project's GPU host does), install the rest without their
# dependencies first, from wheels made on a machine with the registry (docs/performance.md, "The GPU check"):
#   python3 -m pip install --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
#   python3 -m pip install --no-deps --no-build-isolation -e .
set -euo pipefail
out=${1:-gpu_check}
shift || true
mkdir -p "$out"
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(), torch.__version__)"
python3 -m gapbench.perf.gpu_check "$out" "$@"
