"""Whether a job is a full measurement: only full measurements write a row to the results store.

Debug settings (debug=..., fast_dev_run, overfit_batches, limit_*_batches, a profiler) produce
numbers that are not comparable with real runs; storing them would put them into tables.
"""
from __future__ import annotations

from omegaconf import DictConfig

DEBUG_TRAINER_KEYS = ("fast_dev_run", "overfit_batches", "limit_train_batches", "limit_val_batches",
                      "limit_test_batches", "profiler")
UNLIMITED = (None, False, 0, 0.0, 1.0)  # values that leave the trainer as a full run (limit 1.0 = all batches)


def _debug_choice() -> str | None:
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get().runtime.choices.get("debug")
    except ValueError:  # not launched through Hydra
        return None


def not_a_measurement(cfg: DictConfig) -> str | None:
    """The reason this job is not a full measurement (e.g. 'debug=fast'), or None if it is one."""
    choice = _debug_choice()
    if choice:
        return f"debug={choice}"
    for key in DEBUG_TRAINER_KEYS:
        value = cfg.trainer.get(key)
        if value not in UNLIMITED or (key == "limit_train_batches" and value not in (None, 1.0)):
            return f"trainer.{key}={value}"
    return None
