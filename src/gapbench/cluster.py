"""SLURM through Hydra's submitit launcher (`hydra/launcher=slurm`), as gapbench uses it.

- `gpus_per_node` follows the trainer: GPUs are requested only when `trainer.accelerator` asks for
  a GPU (or the user sets `hydra.launcher.gpus_per_node`), so a CPU partition works as configured.
- `launcher_problem` refuses launcher values that cannot work, in one line, before submission.
- `failure_reason` finds a failed job's own one-line explanation in its logs, for the launcher
  (hydra_plugins/gapbench_slurm_launcher).
"""
from __future__ import annotations

import re
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
    return None


_REASON = re.compile(r"^(error: .+|(\w+\.)*\w*(Error|Exception|Interrupt|Exit)\b:?.*)$")


def failure_reason(*logs: str | None) -> str | None:
    """A job's own one-line explanation: its last `error: ...` line, else the last exception line
    of a traceback, looked for in each log in turn (the job's stdout first: where it explains)."""
    for text in logs:
        lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
        for line in reversed(lines):
            if line.startswith("error: "):
                return line[len("error: "):]
        for line in reversed(lines):
            if _REASON.match(line) and not line.startswith(("submitit", "srun:")):
                return line
    return None
