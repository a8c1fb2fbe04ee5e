"""Framework overhead: the per-step time of a real run.py job against a bare PyTorch loop doing
the same work (same task, model, Adam, gradient clipping), and the share of batch generation.

Per-step times are differences of two run lengths, (t(n2) - t(n1)) / (n2 - n1), so start-up
(imports, W&B init, test evaluation) cancels and only the steady training step remains.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

CONF = Path(__file__).resolve().parents[2] / "conf"


def _cfg(results_dir, overrides):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=[f"results_dir={results_dir}", "progress=false",
                                                         "rerun=true", *overrides])


def job_seconds(steps: int, overrides: list[str]) -> float:
    """Wall time of training `steps` steps inside run_job (validation and probe off, test set minimal)."""
    from gapbench.job import run_job

    with tempfile.TemporaryDirectory() as d:
        cfg = _cfg(d, [f"trainer.max_steps={steps}", f"trainer.val_check_interval={10**9}",
                       "task.test_size=64", "task.val_size=64", "probe.at=[]", *overrides])
        t0 = time.perf_counter()
        run_job(cfg)
        return time.perf_counter() - t0


def bare_seconds(steps: int, overrides: list[str]) -> tuple[float, float]:
    """(wall time of `steps` bare training steps, of which batch generation)."""
    from gapbench import cells, tasks
    from gapbench.tasks import build_task

    cfg = _cfg(tempfile.gettempdir(), overrides)
    opts = tasks.options(cfg.task)
    task = build_task(cfg.task.name, cfg.gap, cfg.seed, cfg.task.batch_size, **opts)
    cell_opts = cells.options(cfg.cell)
    torch.manual_seed(cfg.seed)
    model = task.build_model(lambda n: cells.build(cfg.cell.name, n, cfg.cell.hidden_size, **cell_opts),
                             cfg.cell.hidden_size)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    clip = cfg.trainer.gradient_clip_val
    gen = 0.0
    t0 = time.perf_counter()
    for step in range(steps):
        g0 = time.perf_counter()
        batch = task.train_batch(step, "cpu")
        gen += time.perf_counter() - g0
        loss, _ = task.training_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
    return time.perf_counter() - t0, gen


def measure_overhead(overrides: list[str] = (), n1: int = 100, n2: int = 600, repeats: int = 3) -> dict[str, float]:
    """Job and bare loop measured alternately, `repeats` times each; the fastest of each is kept,
    since on a shared machine noise only ever adds time."""
    overrides = list(overrides)
    jobs, bares, gens = [], [], []
    for _ in range(repeats):
        jobs.append((job_seconds(n2, overrides) - job_seconds(n1, overrides)) / (n2 - n1))
        (b2, g2), (b1, g1) = bare_seconds(n2, overrides), bare_seconds(n1, overrides)
        bares.append((b2 - b1) / (n2 - n1))
        gens.append((g2 - g1) / (n2 - n1))
    job, bare, gen = min(jobs), min(bares), min(gens)
    return {"job_ms_per_step": 1e3 * job, "bare_ms_per_step": 1e3 * bare, "overhead_ratio": job / bare,
            "batch_gen_ms": 1e3 * gen, "batch_gen_share": gen / bare, "repeats": repeats}


if __name__ == "__main__":
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", help="run.py overrides, e.g. cell=gru gap=100 logger=none")
    ap.add_argument("--n1", type=int, default=100)
    ap.add_argument("--n2", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    print(json.dumps(measure_overhead(a.overrides, a.n1, a.n2, a.repeats), indent=1))


def sweep_seconds(launcher: str, overrides: list[str]) -> float:
    """Wall time of `python run.py -m ... hydra/launcher=<launcher>` in a fresh results dir."""
    import subprocess
    import sys

    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(CONF.parent / "run.py"), "-m", f"hydra/launcher={launcher}",
                        f"results_dir={d}", "progress=false", "logger=none", *overrides],
                       check=True, capture_output=True)
        return time.perf_counter() - t0


def measure_sweep_speedup(overrides: list[str]) -> dict[str, float]:
    """The same multirun sequentially (Hydra's basic launcher) and with joblib in parallel."""
    seq = sweep_seconds("basic", overrides)
    par = sweep_seconds("joblib", overrides)
    return {"sequential_s": seq, "joblib_s": par, "joblib_ratio": par / seq}
