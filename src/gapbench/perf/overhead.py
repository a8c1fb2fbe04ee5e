"""Framework overhead: the per-step time of a real run.py job against a bare PyTorch loop doing the
same work (same task, model, Adam, gradient clipping), and the share of batch generation.

The two run interleaved, step by step, in one process: a callback runs one bare step, on its own copy
of the model and optimiser, just before every training step of the job. Both therefore see the same
machine at the same moments; measured one after the other, the speed of this shared VM drifted by
10-20% between runs, more than the overhead being measured. A job step costs the interval between two
of its batch starts minus the bare step run inside it; the intervals include everything the job does
per step and its periodic work (logging, checkpoints). The measuring callback itself is counted as job
time, so the ratio errs against the job.

    python -m gapbench.perf.overhead                    # the default job: copy, gap 10, LSTM, W&B offline
    python -m gapbench.perf.overhead gap=100 cell=gru   # any run.py overrides
    python -m gapbench.perf.overhead --sweep            # joblib vs sequential on the card's sweep
    python -m gapbench.perf.overhead --null             # the clock's null test: bare vs bare, ~1.00

--sweep times a whole multirun (`python run.py -m ...`, W&B off, no progress bar) twice in fresh
results directories: with Hydra's basic launcher (one job after another) and with
hydra/launcher=joblib. Without overrides it runs the card's sweep, cell=lstm,gru gap=10,100, at a
fixed budget of 1500 steps per job (with the default time cap every job would stop at 2.5 minutes
whichever launcher runs it, and the comparison would say nothing).
"""
from __future__ import annotations

import contextlib
import io
import tempfile
import time

import lightning.pytorch as L
import torch

from gapbench.config import CONF


def _cfg(results_dir, overrides):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=[f"results_dir={results_dir}", "rerun=true", *overrides])


class BareLoop:
    """The training step of a job written as plain PyTorch: generate the batch, loss, backward, clip, the
    job's optimiser (and rate schedule)."""

    def __init__(self, cfg, device: str = "cpu"):
        from gapbench.train.job import make_model, make_task

        self.task = make_task(cfg)
        torch.manual_seed(cfg.seed)
        self.device = torch.device(device)
        self.model = make_model(cfg, self.task).to(self.device)
        from omegaconf import OmegaConf

        from gapbench.train import optim

        self.opt, self.schedule = optim.build(optim.param_groups(self.model, cfg.cell.get("recipe", "paper")),
                                              OmegaConf.to_container(cfg.optim, resolve=True),
                                              getattr(self.task, "steps_per_epoch", None))
        self.clip = cfg.trainer.gradient_clip_val
        self.index = 0

    def step(self) -> tuple[float, float]:
        """One step; returns (its seconds, of which batch generation)."""
        t0 = time.perf_counter()
        batch = self.task.train_batch(self.index, self.device)
        generated = time.perf_counter()
        loss, _ = self.task.training_loss(self.model, batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        if self.schedule is not None:
            self.schedule.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()  # the step's time, not its launch time (the job waits every log step)
        self.index += 1
        t1 = time.perf_counter()
        return t1 - t0, generated - t0


class Interleaved(L.Callback):
    """Runs one bare step before every job step and accumulates both per-step times after `warmup` steps."""

    def __init__(self, bare: BareLoop, warmup: int):
        self.bare, self.warmup = bare, warmup
        self.job_s = self.bare_s = self.gen_s = 0.0
        self.steps = 0
        self._mark = self._inside = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.bare.device.type == "cuda":
            torch.cuda.synchronize()  # the job's previous step done on the GPU too: both sides timed to completion
        now = time.perf_counter()
        counted = trainer.global_step > self.warmup
        if counted and self._mark is not None:
            self.job_s += now - self._mark - self._inside
            self.steps += 1
        bare_s, gen_s = self.bare.step()
        if counted:
            self.bare_s += bare_s
            self.gen_s += gen_s
        self._mark = now
        self._inside = time.perf_counter() - now

    def result(self) -> dict[str, float]:
        job, bare = self.job_s / self.steps, self.bare_s / self.steps
        return {"job_ms_per_step": 1e3 * job, "bare_ms_per_step": 1e3 * bare, "overhead_ratio": job / bare,
                "batch_gen_ms": 1e3 * self.gen_s / self.steps, "batch_gen_share": self.gen_s / self.bare_s,
                "steps": self.steps}


def measure_once(overrides: list[str], steps: int, warmup: int, device: str = "cpu") -> dict[str, float]:
    from gapbench.train.job import run_job

    with tempfile.TemporaryDirectory() as d:
        cfg = _cfg(d, [f"trainer.max_steps={warmup + steps + 1}", f"trainer.val_check_interval={10**9}",
                       "probe.at=[]", *overrides])
        for key in ("test_size", "val_size", "eval_tokens", "val_tokens"):  # small held-out sets, where the task has them
            if key in cfg.task:
                cfg.task[key] = 64
        cfg.trainer.accelerator = "gpu" if device == "cuda" else "cpu"  # the bare loop's device: like with like
        clock = Interleaved(BareLoop(cfg, device), warmup)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            run_job(cfg, callbacks=[clock])  # the job's progress bar runs, unseen
    return clock.result()


def null_test(overrides: list[str], steps: int = 1000, warmup: int = 100) -> dict[str, float]:
    """The clock with a second bare loop in place of the Lightning job: the ratio must come out ~1."""
    from gapbench.train.job import _threads

    cfg = _cfg(tempfile.gettempdir(), list(overrides))
    torch.set_num_threads(_threads(cfg))  # as run_job would
    clock, other = Interleaved(BareLoop(cfg), warmup), BareLoop(cfg)
    fake_trainer = type("Steps", (), {"global_step": 0})()
    for step in range(warmup + steps + 1):
        fake_trainer.global_step = step
        clock.on_train_batch_start(fake_trainer, None, None, step)
        other.step()
    return {**clock.result(), "null_test": True}


def measure_overhead(overrides: list[str] = (), steps: int = 1000, warmup: int = 100, repeats: int = 3,
                     device: str = "cpu") -> dict:
    """`repeats` interleaved runs of `steps` counted steps each; the median run by ratio is reported."""
    runs = [measure_once(list(overrides), steps, warmup, device) for _ in range(repeats)]
    runs.sort(key=lambda r: r["overhead_ratio"])
    return {**runs[len(runs) // 2], "ratios": [round(r["overhead_ratio"], 4) for r in runs],
            "repeats": repeats, "overrides": list(overrides), "threads": torch.get_num_threads(), "device": device}


def sweep_seconds(launcher: str, overrides: list[str]) -> float:
    """Wall time of `python -m gapbench -m ... hydra/launcher=<launcher>` (run.py's command) in a fresh results dir."""
    import subprocess
    import sys

    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "gapbench", "-m", f"hydra/launcher={launcher}",
                               f"results_dir={d}", "progress=false", "logger=none", *overrides],
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"the {launcher} sweep failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
        return time.perf_counter() - t0


CARD_SWEEP = ["cell=lstm,gru", "gap=10,100", "trainer.max_steps=1500", "trainer.max_time=null"]


def thread_scaling(overrides: list[str], seconds: float = 1.5, repeats: int = 5) -> dict:
    """Per-step time of each job of a sweep as a bare loop with 1 thread and with all cores, in
    alternating blocks of ~`seconds`, best of `repeats`; and the best ratio a parallel launcher could
    reach with one thread per job: sum(steps * t_1) / cores against sum(steps * t_all), one after
    another (perfect packing, no contention between jobs; start-up and evaluation not counted)."""
    from gapbench.train.job import cpu_cores
    from gapbench.config.preflight import _expand

    cores = cpu_cores()
    before, jobs = torch.get_num_threads(), []
    try:
        for job in _expand(list(overrides)):
            cfg = _cfg(tempfile.gettempdir(), job)
            loop, best = BareLoop(cfg), {}
            torch.set_num_threads(1)
            loop.step()
            n = max(3, int(seconds / loop.step()[0]))
            for _ in range(repeats):
                for threads in (1, cores):
                    torch.set_num_threads(threads)
                    loop.step()
                    t0 = time.perf_counter()
                    for _ in range(n):
                        loop.step()
                    best[threads] = min(best.get(threads, float("inf")), (time.perf_counter() - t0) / n)
            jobs.append({"job": " ".join(job), "steps": int(cfg.trainer.max_steps), "ms_1_thread": 1e3 * best[1],
                         f"ms_{cores}_threads": 1e3 * best[cores], "speedup": best[1] / best[cores]})
    finally:
        torch.set_num_threads(before)
    serial = sum(j["steps"] * j[f"ms_{cores}_threads"] for j in jobs)
    parallel = sum(j["steps"] * j["ms_1_thread"] for j in jobs) / cores
    return {"cores": cores, "jobs": jobs, "best_parallel_ratio": parallel / serial}


def measure_sweep_speedup(overrides: list[str] = ()) -> dict:
    """The same multirun sequentially (Hydra's basic launcher) and with joblib in parallel, and the
    bound on that ratio from the jobs' thread scaling."""
    overrides = list(overrides) or CARD_SWEEP
    seq = sweep_seconds("basic", overrides)
    par = sweep_seconds("joblib", overrides)
    return {"sequential_s": seq, "joblib_s": par, "joblib_ratio": par / seq, "overrides": overrides,
            "bound": thread_scaling(overrides)}


def main(argv=None) -> dict:
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m gapbench.perf.overhead", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", help="run.py overrides, e.g. cell=gru gap=100 logger=none")
    ap.add_argument("--steps", type=int, default=1000, help="counted steps per run (default 1000)")
    ap.add_argument("--warmup", type=int, default=100, help="uncounted steps first (default 100)")
    ap.add_argument("--repeats", type=int, default=3, help="runs; the median by ratio is reported (default 3)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the job and the bare loop run")
    ap.add_argument("--sweep", action="store_true", help="time a multirun with joblib against one job after another")
    ap.add_argument("--null", action="store_true",
                    help="check the clock: a second bare loop in place of the job (the ratio should be ~1.00)")
    a = ap.parse_args(argv)
    for name in ("steps", "repeats"):
        if getattr(a, name) < 1:
            ap.error(f"--{name} must be >= 1")
    if a.warmup < 0:
        ap.error("--warmup must be >= 0")
    if a.sweep:
        result = measure_sweep_speedup(a.overrides)
    elif a.null:
        result = null_test(a.overrides, a.steps, a.warmup)
    else:
        if a.device == "cuda" and not torch.cuda.is_available():
            print("python -m gapbench.perf.overhead: --device cuda needs a CUDA GPU; none is visible (valid: --device cpu)")
            raise SystemExit(2)
        result = measure_overhead(a.overrides, a.steps, a.warmup, a.repeats, a.device)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
