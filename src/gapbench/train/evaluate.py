"""Evaluate a checkpoint on its task's test set, without training.

    python run.py eval_only=true ckpt_path=results/jobs/RUN_ID/last.ckpt

Every checkpoint a job writes carries the job's resolved config (ConfigInCheckpoint), so the task,
its test set and the model are rebuilt from the checkpoint alone; the weights are then loaded and
Lightning's test loop runs as at the end of training. Prints the metrics, compares them with the
job's stored row where there is one, and writes nothing.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import lightning.pytorch as L

from gapbench.config.validate import ConfigError

log = logging.getLogger("gapbench")
CONFIG_KEY = "gapbench_config"


class ConfigInCheckpoint(L.Callback):
    """Stores the job's resolved config in every checkpoint, under checkpoint['gapbench_config']."""

    def __init__(self, config: dict[str, Any]):
        self.config = {k: v for k, v in config.items() if k != "hydra"}

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        checkpoint[CONFIG_KEY] = self.config


def load(ckpt_path: str | Path):
    """(config, GapModule with the checkpoint's weights, task, step) from a gapbench checkpoint."""
    import torch
    from omegaconf import OmegaConf

    from gapbench.train.job import make_model, make_task
    from gapbench.train.lightning_module import GapModule

    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"ckpt_path={ckpt_path} is not a file; give a job's checkpoint, e.g. results/jobs/RUN_ID/last.ckpt")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if CONFIG_KEY not in ckpt:
        raise ConfigError(f"ckpt_path={ckpt_path} holds no gapbench config (written by an older gapbench, or "
                          "not by gapbench); evaluate it by running its job's command again")
    cfg = OmegaConf.create(ckpt[CONFIG_KEY])
    task = make_task(cfg)
    module = GapModule(task, make_model(cfg, task), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    module.load_state_dict(ckpt["state_dict"])
    return cfg, module, task, int(ckpt.get("global_step", 0))


def evaluate(ckpt_path: str | Path, threads: int | None = None) -> dict[str, Any]:
    """Test metrics of a checkpoint: {'run_id', 'step', 'score_name', 'score', 'test/<metric>': ...}."""
    import torch

    from gapbench.train.lightning_module import TaskData

    cfg, module, task, step = load(ckpt_path)
    if threads:
        torch.set_num_threads(threads)
    tr = cfg.trainer
    trainer = L.Trainer(accelerator=tr.accelerator, devices=1, precision=tr.precision, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        limit_test_batches=tr.get("limit_test_batches") or 1.0, use_distributed_sampler=False)
    trainer.test(module, datamodule=TaskData(task), verbose=False)
    metrics = module.test_metrics
    return {"run_id": Path(ckpt_path).parent.name, "step": step, "task": cfg.task.name, "cell": cfg.cell.name,
            "gap": cfg.gap, "seed": cfg.seed, "score_name": task.score_name,
            "score": metrics.get(task.score_name, float("nan")), "baseline": task.baseline,
            **{f"test/{k}": v for k, v in metrics.items()}}


def run_eval(cfg) -> dict[str, Any]:
    """`run.py eval_only=true ckpt_path=...`: one line of metrics, one line comparing with the stored row."""
    from hydra.utils import to_absolute_path

    from gapbench import results
    from gapbench.train.job import _threads

    if not cfg.ckpt_path:
        raise ConfigError("eval_only=true needs ckpt_path=...; e.g. ckpt_path=results/jobs/RUN_ID/last.ckpt")
    out = evaluate(to_absolute_path(cfg.ckpt_path), threads=_threads(cfg))
    tests = {k: v for k, v in out.items() if k.startswith("test/")}
    log.info("eval %s at step %d: %s=%.6g (baseline %.4g); %s", out["run_id"], out["step"], out["score_name"],
             out["score"], out["baseline"], ", ".join(f"{k}={v:.6g}" for k, v in tests.items()))
    stored = results.read_run(Path(to_absolute_path(cfg.results_dir)).expanduser(), out["run_id"])
    if stored and stored.get("steps") == out["step"]:
        same = all(_same(stored.get(k), v) for k, v in tests.items())
        log.info("stored row %s: %s", out["run_id"], "identical test metrics" if same else "differs: " + ", ".join(
            f"{k} stored {stored.get(k)!r} vs {v!r}" for k, v in tests.items() if not _same(stored.get(k), v)))
        out["matches_stored"] = same
    return out


def _same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
