"""Whether a job is a full measurement: only full measurements write a row to the results store.

Debug settings (debug=..., fast_dev_run, overfit_batches, limit_*_batches, a profiler) produce
numbers that are not comparable with real runs; storing them would put them into tables.
"""
from __future__ import annotations

from omegaconf import DictConfig

DEBUG_TRAINER_KEYS = ("fast_dev_run", "overfit_batches", "limit_train_batches", "limit_val_batches",
                      "limit_test_batches", "profiler")


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
        if key.startswith("limit_"):  # Lightning: an int is a number of batches, a float a fraction; 1.0 = all
            full = value is None or (isinstance(value, float) and value == 1.0)
        else:
            full = not value  # fast_dev_run=false, overfit_batches=0, profiler=null
        if not full:
            return f"trainer.{key}={value}"
    return None
