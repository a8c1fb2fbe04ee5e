#!/usr/bin/env bash
# GPU check for issue 5, sized for a few minutes on one GPU, no downloads:
#   bash scripts/gpu_check.sh OUT_DIR
# Writes OUT_DIR/bench.json + bench.txt (every cell vs cuDNN's LSTM, same run) and a short sweep's
# results store + report in OUT_DIR/results. Needs the project installed (pip install -e .).
set -euo pipefail
out=${1:-gpu_check}
mkdir -p "$out"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" | tee "$out/device.txt"
python -m gapbench.perf.bench --device cuda --batch 128 --hidden 128 256 --time 100 1000 --repeats 5 \
  --json "$out/bench.json" | tee "$out/bench.txt"
python run.py -m cell=lstm,gru,lstm_peephole,lstm_cifg gap=100 trainer.max_steps=500 trainer.max_time=null \
  logger=csv progress=false results_dir="$out/results" | tail -n 20
python -m gapbench.report --results "$out/results" --out "$out/results/report"
