"""SLURM through Hydra's submitit launcher (`hydra/launcher=slurm`), as gapbench uses it.

- `gpus_per_node` follows the trainer: GPUs are requested only when `trainer.accelerator` asks for
  a GPU (or the user sets `hydra.launcher.gpus_per_node`), so a CPU partition works as configured.
- `launcher_problem` refuses launcher values that cannot work, in one line, before submission:
  not positive, `timeout_min*60 <= signal_delay_s`, more than any node of the partition has
  (where `sinfo` answers). `requested_machine` is what the machine checks (GPU present, memory)
  judge for a SLURM job: what the launcher asks for, not the submitting machine.
- `requeue_if_preempted`: a pre-empted job (SIGTERM, `PreemptTime` set) that has saved requeues
  itself, so it comes back whether or not the partition gives a grace period; after `scancel`
  (no `PreemptTime`) it does not.
- `failure_reason` finds a failed job's own one-line explanation in its logs, for the launcher
  (hydra_plugins/gapbench_slurm_launcher).
"""
from __future__ import annotations

import functools
import os
import re
import subprocess
from typing import Any

from omegaconf import OmegaConf

GPU_ACCELERATORS = ("gpu", "cuda")


def gpus_per_node(accelerator: Any, devices: Any) -> int | None:
    """GPUs to request per node for `trainer.accelerator`/`trainer.devices`: none (the sbatch flag is
    left out) unless the trainer asks for a GPU; `auto` trains on whatever the job is given."""
    if str(accelerator).lower() not in GPU_ACCELERATORS:
        return None
    try:
        return max(1, int(devices))
    except (TypeError, ValueError):  # devices=auto or a list of ids
        return len(devices) if isinstance(devices, (list, tuple)) else 1


OmegaConf.register_new_resolver("gapbench_slurm_gpus", gpus_per_node, replace=True)

POSITIVE = ("timeout_min", "cpus_per_task", "mem_gb", "tasks_per_node", "nodes", "array_parallelism", "gpus_per_node")


def launcher_problem(launcher: dict[str, Any]) -> str | None:
    """Why these submitit SLURM launcher values cannot work (one line), or None."""
    for key in POSITIVE:
        value = launcher.get(key)
        if value is None and key in ("gpus_per_node", "cpus_per_task", "mem_gb"):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            if key == "gpus_per_node" and value == 0:
                continue  # 0: no GPU, same as null
            return (f"hydra.launcher.{key}={value!r} is invalid; give a positive whole number"
                    f"{' or null (no GPU)' if key == 'gpus_per_node' else ''}")
    delay, timeout = launcher.get("signal_delay_s") or 0, launcher.get("timeout_min")
    if timeout * 60 <= delay:
        return (f"hydra.launcher.timeout_min={timeout} is not longer than hydra.launcher.signal_delay_s={delay}: "
                f"the job would be told to save and requeue before it trains; give timeout_min > {delay / 60:g} "
                f"or a smaller signal_delay_s")
    return _beyond_nodes(launcher)


@functools.lru_cache(maxsize=16)
def node_limits(partition: str | None) -> dict[str, int] | None:
    """The largest CPUs, memory (MiB) and GPUs of one node of `partition` (None: the default one),
    from `sinfo`; None where no SLURM answers here."""
    try:
        r = subprocess.run(["sinfo", "-h", "-N", "-o", "%c|%m|%G|%P", *(["-p", partition] if partition else [])],
                           capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return None
    nodes = [line.split("|") for line in r.stdout.splitlines() if line.count("|") == 3]
    if not partition:
        nodes = [n for n in nodes if n[3].endswith("*")]  # the default partition
    if r.returncode != 0 or not nodes:
        return None
    gpus = [sum(int(m.group(1)) for m in re.finditer(r"gpu(?::[^:,(]+)?:(\d+)", n[2])) for n in nodes]
    return {"cpus": max(int(n[0].rstrip("+")) for n in nodes), "mem_mb": max(int(n[1].rstrip("+")) for n in nodes),
            "gpus": max(gpus)}


def _beyond_nodes(launcher: dict[str, Any]) -> str | None:
    nodes = node_limits(launcher.get("partition"))
    if nodes is None:
        return None
    where = f"partition {launcher.get('partition') or '(default)'}"
    asked = {"cpus_per_task": ((launcher.get("cpus_per_task") or 1) * (launcher.get("tasks_per_node") or 1),
                               nodes["cpus"], "CPUs"),
             "mem_gb": ((launcher.get("mem_gb") or 0) * 1024, nodes["mem_mb"], "MiB of memory"),
             "gpus_per_node": (launcher.get("gpus_per_node") or 0, nodes["gpus"], "GPUs")}
    for key, (want, most, unit) in asked.items():
        if want > most:
            return (f"hydra.launcher.{key}={launcher.get(key)} asks for {want} {unit} per node but the largest node of "
                    f"{where} has {most} (sinfo); the job would wait in the queue forever")
    return None


def requested_machine(launcher: dict[str, Any], trainer: dict[str, Any]):
    """The machine a SLURM job gets, for the checks that depend on it (gapbench.config.validate.Machine)."""
    from gapbench.config.validate import Machine

    gpus = launcher.get("gpus_per_node")
    if gpus is None:
        gpus = gpus_per_node(trainer.get("accelerator"), trainer.get("devices")) or 0
    mem_gb = launcher.get("mem_gb")
    if mem_gb is None:
        nodes = node_limits(launcher.get("partition"))
        memory, memory_from = (nodes["mem_mb"] * 2**20, "a whole node, from sinfo") if nodes else (None, "")
    else:
        memory, memory_from = mem_gb * 2**30, f"hydra.launcher.mem_gb={mem_gb}"
    return Machine(gpus=int(gpus), memory_bytes=memory, gpus_from=f"hydra.launcher.gpus_per_node={gpus}",
                   memory_from=memory_from)


_REASON = re.compile(r"^(error: .+|(\w+\.)*\w*(Error|Exception|Interrupt|Exit)\b:?.*)$")


def failure_reason(*logs: str | None) -> str | None:
    """A job's own one-line explanation: its last `error: ...` line, else its `interrupted by`
    line, else the last exception line of a traceback, looked for in each log in turn (the job's
    stdout first: where it explains)."""
    for text in logs:
        lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
        for line in reversed(lines):
            if line.startswith("error: "):
                return line[len("error: "):]
        for line in reversed(lines):  # stopped by a signal: gapbench's own line says where and how to resume
            if " interrupted by SIG" in line:
                return line.split("] - ", 1)[-1]
        for line in reversed(lines):
            if _REASON.match(line) and not line.startswith(("submitit", "srun:")):
                return line
    return None


def _scontrol(*args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None


def preempted(job_id: str) -> bool:
    """SLURM sets the job's PreemptTime when it selects the job for pre-emption; `scancel`,
    `scontrol requeue` and time limits leave it at None."""
    shown = _scontrol("show", "job", job_id)
    match = re.search(r"\bPreemptTime=(\S+)", shown.stdout) if shown and shown.returncode == 0 else None
    return bool(match) and match.group(1) not in ("None", "Unknown")


def requeue_if_preempted() -> bool:
    """In a SLURM job that saved on SIGTERM: requeue it if it was pre-empted. Under a grace period
    SLURM would otherwise see the job end by itself (exit 143) and mark it FAILED, not requeue it.
    True when a requeue was asked for."""
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id or os.environ.get("SLURM_PROCID", "0") != "0" or not preempted(job_id):  # DDP: rank 0 asks
        return False
    done = _scontrol("requeue", job_id)
    return bool(done) and done.returncode == 0
