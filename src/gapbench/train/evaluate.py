"""Evaluate a checkpoint on its task's test set, without training.

    python run.py eval_only=true ckpt_path=results/jobs/RUN_ID/last.ckpt
    python run.py eval_only=true ckpt_path=... gap=20 seed=3 task.test_size=4096 eval_out=eval.json

Every checkpoint a job writes carries the job's resolved config (jobstate.ConfigInCheckpoint), so the task,
its test set and the model are rebuilt from the checkpoint alone; the weights are then loaded and
Lightning's test loop runs as at the end of training. `gap`, `seed` (the test set's) and
`task.test_size` given on the command line replace the checkpoint's: a gap-10 model tested at gap 20
(refused in one line where the model's weights are sized to the training gap, or the task has no
such gap). Any other key would need another model and is refused (validate.check_eval_overrides).
Prints the metrics, compares them with the job's stored row where nothing was changed, stores no row;
`eval_out=FILE` also writes them to FILE (JSON).
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import lightning.pytorch as L

from gapbench.config.validate import ConfigError
from gapbench.train import jobstate
from gapbench.train.jobstate import CONFIG_KEY

log = logging.getLogger("gapbench")


def load(ckpt_path: str | Path, changes: dict[str, Any] | None = None):
    """(config, GapModule with the checkpoint's weights, task, step) from a gapbench checkpoint;
    `changes`: {dotted key: value} among validate.EVAL_CHANGES, applied to its config first."""
    from omegaconf import OmegaConf

    from gapbench.train.job import make_model, make_task
    from gapbench.train.lightning_module import GapModule

    try:
        ckpt = jobstate.read_checkpoint(ckpt_path)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    cfg = OmegaConf.create(ckpt[CONFIG_KEY])
    trained = {k: OmegaConf.select(cfg, k) for k in (changes or {})}
    for key, value in (changes or {}).items():
        OmegaConf.update(cfg, key, value, merge=False)
    if changes:
        from gapbench.config.validate import check_config

        check_config(cfg)  # e.g. a gap the checkpoint's task does not have
    task = make_task(cfg)
    module = GapModule(task, make_model(cfg, task), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    try:
        module.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        what = ", ".join(f"{k}={v} (trained at {trained[k]})" for k, v in (changes or {}).items())
        first = str(e).strip().splitlines()
        raise ConfigError(f"the {cfg.cell.name} checkpoint's weights do not fit the model at {what}: its "
                          f"weights are sized to the training config ({first[-1].strip() if first else e})") from None
    return cfg, module, task, int(ckpt.get("global_step", 0))


def evaluate(ckpt_path: str | Path, threads: int | None = None, changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """Test metrics of a checkpoint: {'run_id', 'step', 'score_name', 'score', 'test/<metric>': ...};
    `changes`: see load."""
    import torch

    from gapbench.train.lightning_module import TaskData

    cfg, module, task, step = load(ckpt_path, changes)
    if threads:
        torch.set_num_threads(threads)
    tr = cfg.trainer
    trainer = L.Trainer(accelerator=tr.accelerator, devices=1, precision=tr.precision, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        limit_test_batches=tr.get("limit_test_batches") or 1.0, use_distributed_sampler=False)
    trainer.test(module, datamodule=TaskData(task), verbose=False)
    metrics = module.test_metrics
    return {"run_id": Path(ckpt_path).parent.name, "step": step, "task": cfg.task.name, "cell": cfg.cell.name,
            "gap": cfg.gap, "seed": cfg.seed, "test_size": cfg.task.get("test_size"), "changed": dict(changes or {}),
            "ckpt_path": str(ckpt_path), "score_name": task.score_name,
            "score": metrics.get(task.score_name, float("nan")), "baseline": task.baseline,
            **{f"test/{k}": v for k, v in metrics.items()}}


def run_eval(cfg) -> dict[str, Any]:
    """`run.py eval_only=true ckpt_path=...`: one line of metrics, one line comparing with the stored row."""
    from hydra.utils import to_absolute_path

    from gapbench import results
    from gapbench.train.job import _threads

    if not cfg.ckpt_path:
        raise ConfigError("eval_only=true needs ckpt_path=...; e.g. ckpt_path=results/jobs/RUN_ID/last.ckpt")
    changes = _command_line_changes(cfg)
    out = evaluate(to_absolute_path(cfg.ckpt_path), threads=_threads(cfg), changes=changes)
    tests = {k: v for k, v in out.items() if k.startswith("test/") and isinstance(v, (int, float))}
    log.info("eval %s at step %d%s: %s=%.6g (baseline %.4g); %s", out["run_id"], out["step"],
             "".join(f", {k}={v}" for k, v in changes.items()), out["score_name"],
             out["score"], out["baseline"], ", ".join(f"{k}={v:.6g}" for k, v in tests.items()))
    if cfg.get("eval_out"):
        path = Path(to_absolute_path(cfg.eval_out)).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=1, default=str) + "\n")
        log.info("eval -> %s", path)
    stored = results.read_run(Path(to_absolute_path(cfg.results_dir)).expanduser(), out["run_id"])
    if stored and stored.get("steps") == out["step"] and not changes:
        same = all(_same(stored.get(k), v) for k, v in tests.items())
        log.info("stored row %s: %s", out["run_id"], "identical test metrics" if same else "differs: " + ", ".join(
            f"{k} stored {stored.get(k)!r} vs {v!r}" for k, v in tests.items() if not _same(stored.get(k), v)))
        out["matches_stored"] = same
    return out


def _command_line_changes(cfg) -> dict[str, Any]:
    """The keys of validate.EVAL_CHANGES given on the command line, with their values in `cfg`;
    a key the checkpoint's model cannot honour is refused (preflight refuses it first)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from gapbench.config.validate import EVAL_CHANGES, check_eval_overrides

    try:
        keys = [o.split("=", 1)[0].lstrip("+~") for o in HydraConfig.get().overrides.task]
    except ValueError:  # not launched through Hydra
        return {}
    check_eval_overrides(keys)
    return {k: OmegaConf.select(cfg, k) for k in EVAL_CHANGES if k in keys}


def _same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
