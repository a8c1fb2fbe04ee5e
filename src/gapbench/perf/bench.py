"""Speed of every cell: forward+backward time per batch, against nn.LSTM measured in the same run.

    python -m gapbench.perf.bench               # B=128, H=128,256, T=100,1000, every registered model
    python -m gapbench.perf.bench --quick       # < 1 min on 2 CPU cores
    python -m gapbench.perf.bench --quick --overhead # and run.py's per-step overhead against a bare loop
    python -m gapbench.perf.bench --hidden 256 --time 1000 --cells lstm lstm_peephole --json out.json

What is measured, per (hidden size H, sequence length T) and run. The runs come from the registry:
each model's `bench_runs()` hook (cells.base) lists the option sets it is measured with (e.g. the
scan cells also with their sequential loop, `impl=loop`, and a line gives the ratio; Greff's LSTM
once per variant), built with max_len = T:

* time: median over --repeats of one forward + backward pass, after --warmup passes. The loss is
  sum(outputs * w) with a fixed random w (every output gets a dense gradient); x requires grad
  (as for a stacked layer), parameters too. Repeats go round-robin over the cells, so a burst of
  load from another process hits all cells alike instead of one of them.
* ratio: time / time of `lstm` (nn.LSTM, fused) of the same B, H, T in the same run.
* tokens/s: B * T / time.
* GFLOP/s: matmul FLOPs of the model (its `matmul_flops` hook; for a recurrent cell input
  projection + recurrence, forward, and twice that for backward: 3 x 2 * B * T * (I + H_rec) * G)
  per second; elementwise work is not counted. Compared
  with the best dense-matmul rate measured in the same run on a [B, H] x [H, 4H] product (torch.mm,
  and on CPU also oneDNN, which nn.LSTM and the hand-written cells use; best of 8 windows of 50 ms).
* memory: on CUDA, torch.cuda.max_memory_allocated during one pass minus the allocation before it.
  On CPU, the growth of the process's peak resident set (Linux VmHWM, reset through
  /proc/self/clear_refs, after malloc_trim) during one pass: what the pass made the process hold,
  allocator caching included. '-' where that cannot be measured.

CPU timings are only meaningful on an otherwise idle machine: with 2 threads on 2 cores, another
busy process makes OpenMP's spinning threads wait on each other, and a pass can take 50x longer
(measured: nn.LSTM B=128 H=128 T=100, 0.09 s alone, 4.8 s beside one busy process). The load
average is printed before and after. On a shared machine run with OMP_WAIT_POLICY=PASSIVE in the
environment (it must be set before torch starts) or with --threads 1; ratios to nn.LSTM are then
still comparable, absolute times less so.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import sys
import time

import torch

from gapbench import cells
from gapbench.cells import _bptt

def matmul_flops(name: str, B: int, T: int, I: int, H: int, **opts) -> float:
    """Matmul FLOPs of one forward + backward pass (the model's `matmul_flops` hook, cells.base)."""
    return cells.matmul_flops(name, B, T, I, H, **opts)


def label(name: str, opts: dict) -> str:
    """A row's name: the cell, and the options of this run where they are not the defaults."""
    return " ".join([name, *(f"{k}={v}" for k, v in opts.items())])


def runs_for(names, impl: str | None = None) -> list[tuple[str, dict]]:
    """(cell, options) of every run: each cell's own `bench_runs()`; `impl` goes to every cell that
    has that implementation (the hand-written cells: bptt or autograd) unless a run sets its own."""
    out = []
    for name in names:
        declared = cells.base.declared_options(cells.cell_class(name))
        for run_opts in cells.cell_class(name).bench_runs():
            opts = dict(run_opts)
            if impl is not None and "impl" in declared and "impl" not in opts and declared["impl"].valid(impl) \
                    and impl != declared["impl"].default:
                opts["impl"] = impl
            out.append((name, opts))
    return out


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def dense_rates(B: int, H: int, device, dtype=torch.float32, windows: int = 8) -> dict[str, float]:
    """GFLOP/s of a [B, H] x [H, 4H] product: torch.mm, and oneDNN where the cells use it
    (best of `windows` windows of 50 ms each)."""
    a = torch.randn(B, H, device=device, dtype=dtype)
    w = torch.randn(4 * H, H, device=device, dtype=dtype)
    fns = {"torch.mm": lambda: a @ w.t()}
    if device.type == "cpu" and _bptt.ONEDNN and dtype == torch.float32:
        fns["oneDNN"] = lambda: torch.ops.mkldnn._linear_pointwise(a, w, None, "none", [], "")
    out = {name: 0.0 for name in fns}
    for name, fn in fns.items():
        for _ in range(5):
            fn()
    for _ in range(windows):  # best of several short windows: a load burst on a shared machine
        for name, fn in fns.items():  # must not pass for the device's rate (measured: 41 vs 201)
            _sync(device)
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < 0.05:
                fn()
                n += 1
            _sync(device)
            out[name] = max(out[name], 2.0 * B * H * 4 * H * n / (time.perf_counter() - t0) / 1e9)
    return out


class _Memory:
    """Peak memory growth during a call (see module docstring)."""

    def __init__(self, device):
        self.device = device
        self.cpu_ok = False
        if device.type == "cpu" and sys.platform.startswith("linux"):
            try:
                self._libc = ctypes.CDLL("libc.so.6")
                self._reset_hwm()
                self._status("VmHWM")
                self.cpu_ok = True
            except (OSError, KeyError, AttributeError):
                pass

    @staticmethod
    def _status(key: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        raise KeyError(key)

    @staticmethod
    def _reset_hwm():
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

    def measure(self, fn) -> float | None:
        """Bytes: peak during fn() minus the level before it."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            fn()
            torch.cuda.synchronize()
            return float(torch.cuda.max_memory_allocated() - base)
        if not self.cpu_ok:
            fn()
            return None
        self._libc.malloc_trim(0)
        self._reset_hwm()
        base = self._status("VmRSS")
        fn()
        return float(self._status("VmHWM") - base)


def _pass_fn(cell, x, w):
    def run():
        for p in cell.parameters():
            p.grad = None
        x.grad = None
        out, _ = cell(x)
        (out * w).sum().backward()
    return run


def bench_config(names, B, T, I, H, *, repeats, warmup, device, dtype, input_grad=True, opts=None,
                 seed=0) -> list[dict]:
    """One row per run for one (B, T, I, H). `names`: cell names, or (cell, options) pairs;
    `opts`: options per cell name for plain names."""
    torch.manual_seed(seed)
    x = torch.randn(B, T, I, device=device, dtype=dtype, requires_grad=input_grad)
    w = torch.randn(B, T, H, device=device, dtype=dtype)
    runs, fused, specs = {}, {}, {}
    for item in names:
        name, o = item if isinstance(item, tuple) else (item, (opts or {}).get(item, {}))
        key = label(name, o)
        cell = cells.build(name, I, H, max_len=T, **o).to(device=device, dtype=dtype)
        runs[key], fused[key], specs[key] = _pass_fn(cell, x, w), bool(getattr(cell, "fused", False)), (name, o)
    for _ in range(warmup):
        for fn in runs.values():
            fn()
            _sync(device)
    times = {n: [] for n in runs}
    for _ in range(repeats):
        for n, fn in runs.items():  # round-robin: a load burst hits every cell alike
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[n].append(time.perf_counter() - t0)
    mem = _Memory(device)
    rows = []
    for n, fn in runs.items():
        t = statistics.median(times[n])
        name, o = specs[n]
        rows.append({"cell": name, "options": o, "label": n, "batch": B, "time": T, "input": I, "hidden": H,
                     "fused": fused[n],
                     "seconds": t, "seconds_all": times[n], "tokens_per_s": B * T / t,
                     "gflops": matmul_flops(name, B, T, I, H, **o) / t / 1e9,
                     "peak_mem_bytes": mem.measure(fn)})
    if "lstm" in runs:
        base = statistics.median(times["lstm"])
        for r in rows:
            r["ratio_to_lstm"] = r["seconds"] / base
    first = {}
    for r in rows:  # a cell measured with several option sets: time relative to its first run
        first.setdefault(r["cell"], r)
        if r is not first[r["cell"]]:
            r["ratio_to_first"] = r["seconds"] / first[r["cell"]]["seconds"]
    return rows


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def run(argv=None) -> dict:
    """Parse argv, measure, print the tables, write --json; returns what --json writes."""
    threads, use_onednn = torch.get_num_threads(), _bptt.USE_ONEDNN
    try:
        return _run(parse_args(argv))
    finally:  # leave the process as it was (tests call this in-process)
        torch.set_num_threads(threads)
        _bptt.USE_ONEDNN = use_onednn


def _run(args) -> dict:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.no_onednn:
        _bptt.USE_ONEDNN = False
    names = list(args.cells)
    if "lstm" not in names:
        names.insert(0, "lstm")  # the reference every ratio is taken against
    runs = runs_for(names, args.impl)
    meta = {"torch": torch.__version__, "device": str(device), "dtype": args.dtype,
            "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
            "onednn_matmuls": device.type == "cpu" and _bptt.ONEDNN and _bptt.USE_ONEDNN and dtype == torch.float32,
            "impl": args.impl, "input_grad": not args.no_input_grad, "repeats": args.repeats,
            "warmup": args.warmup, "load_before": _load()}
    if device.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(device)
    meta["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY", "")
    print(f"# torch {meta['torch']} on {device} ({meta['threads']} thread{'s' if meta['threads'] != 1 else ''}"
          f"{', OMP_WAIT_POLICY=' + meta['omp_wait_policy'] if meta['omp_wait_policy'] else ''}), {args.dtype}, "
          f"hand-written impl={args.impl}, oneDNN matmuls={meta['onednn_matmuls']}; "
          f"load average before: {meta['load_before']}", flush=True)
    configs, rows = [], []
    for H in args.hidden:
        for T in args.time:
            I = args.input_size or H
            rates = dense_rates(args.batch, H, device, dtype)
            configs.append({"batch": args.batch, "time": T, "input": I, "hidden": H, "dense_gflops": rates})
            best = max(rates.values())
            part = bench_config(runs, args.batch, T, I, H, repeats=args.repeats, warmup=args.warmup,
                                device=device, dtype=dtype, input_grad=not args.no_input_grad)
            for r in part:
                r["dense_gflops"] = best
                r["frac_of_dense"] = r["gflops"] / best
            rows += part
            print(_table(part, rates), flush=True)
    result = {"meta": meta, "configs": configs, "rows": rows}
    if args.overhead:
        from gapbench.perf import overhead

        print("\nframework overhead: the default job (python run.py) interleaved step by step with a bare "
              "PyTorch loop doing the same work (gapbench.perf.overhead)", flush=True)
        result["overhead"] = o = overhead.measure_overhead([], steps=args.overhead_steps, repeats=3)
        print(f"run.py {o['job_ms_per_step']:.2f} ms/step, bare loop {o['bare_ms_per_step']:.2f} ms/step: "
              f"{o['overhead_ratio']:.2f}x (runs: {', '.join(f'{r:.2f}' for r in o['ratios'])}); "
              f"batch generation {o['batch_gen_ms']:.3f} ms = {100 * o['batch_gen_share']:.1f}% of a step")
    meta["load_after"] = _load()
    print(f"# load average after: {meta['load_after']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
        print(f"# wrote {args.json}")
    return result


def _table(rows, rates) -> str:
    r0 = rows[0]
    w = max(14, max(len(r["label"]) for r in rows) + 2)
    head = (f"\nB={r0['batch']} T={r0['time']} I={r0['input']} H={r0['hidden']}   dense [B,H]x[H,4H]: "
            + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in rates.items()))
    lines = [head, f"{'cell':<{w}}{'fused':>6}{'ms/batch':>10}{'x lstm':>8}{'tokens/s':>11}"
                   f"{'GFLOP/s':>9}{'% dense':>8}{'peak MB':>9}"]
    for r in rows:
        mem = "-" if r["peak_mem_bytes"] is None else f"{r['peak_mem_bytes'] / 2**20:.0f}"
        ratio = f"{r['ratio_to_lstm']:.2f}" if "ratio_to_lstm" in r else "-"
        lines.append(f"{r['label']:<{w}}{'yes' if r['fused'] else 'no':>6}{r['seconds'] * 1e3:>10.1f}{ratio:>8}"
                     f"{r['tokens_per_s']:>11.0f}{r['gflops']:>9.1f}{100 * r['frac_of_dense']:>7.0f}%{mem:>9}")
    firsts = {r["cell"]: r for r in reversed(rows)}
    for r in rows:
        if "ratio_to_first" in r:
            lines.append(f"  {r['label']} takes {r['ratio_to_first']:.2f}x the time of {firsts[r['cell']]['label']}")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m gapbench.perf.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", nargs="+", default=cells.names(), choices=cells.names(), metavar="CELL",
                   help=f"cells to measure (default: all: {', '.join(cells.names())}); "
                        "lstm is always included as the reference")
    p.add_argument("--batch", type=int, default=None, help="batch size B (default 128)")
    p.add_argument("--hidden", type=int, nargs="+", default=None, help="hidden sizes H (default 128 256)")
    p.add_argument("--time", type=int, nargs="+", default=None, help="sequence lengths T (default 100 1000)")
    p.add_argument("--input-size", type=int, default=None, help="input size I (default: = H)")
    p.add_argument("--repeats", type=int, default=None, help="timed passes per cell; the median is reported (default 5)")
    p.add_argument("--warmup", type=int, default=None, help="untimed passes per cell first (default 1)")
    p.add_argument("--quick", action="store_true",
                   help="small run, < 1 min on 2 CPU cores: H=128 256, T=100, 3 repeats (explicit options still win)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if available, else cpu")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="default: float32")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--impl", choices=["bptt", "autograd"], default="bptt",
                   help="forward/backward of the hand-written cells: custom BPTT Function (default) or plain autograd loop "
                        "(applies to every cell with that `impl`)")
    p.add_argument("--no-onednn", action="store_true",
                   help="hand-written cells use torch.mm/addmm instead of oneDNN matmuls on CPU")
    p.add_argument("--no-input-grad", action="store_true", help="x does not require grad (no dx computed)")
    p.add_argument("--overhead", action="store_true",
                   help="also measure run.py's per-step time against a bare PyTorch loop (default job, ~35 s; "
                        "other jobs: python -m gapbench.perf.overhead OVERRIDES)")
    p.add_argument("--overhead-steps", type=int, default=1000, help=argparse.SUPPRESS)
    p.add_argument("--json", metavar="PATH", help="also write meta, per-config dense rates and all rows as JSON")
    args = p.parse_args(argv)
    quick = {"batch": 128, "hidden": [128, 256], "time": [100], "repeats": 3, "warmup": 1}
    full = {"batch": 128, "hidden": [128, 256], "time": [100, 1000], "repeats": 5, "warmup": 1}
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


def main(argv=None):
    run(argv)


if __name__ == "__main__":
    main()
