"""Conditions: runs that may be aggregated together are identical in every config key but the seed.

A row's condition is computed from its flattened config (`cfg.*` columns, as `results.flatten`
stores them), so rows written before the `condition` column existed get the same id as new ones:

- left out: the seed; the keys that only change how a job is shown or stored (identity.PRESENTATION_KEYS,
  identity.PRESENTATION_TRAINER_KEYS); `trainer.max_time`, a safety net that never changes what a run
  that it did not stop computes (a run it stopped says so in `stopped_by` and is set apart);
- a key at its neutral default (identity.NEUTRAL_DEFAULTS) counts as absent, and so does a null value;
- numbers compare as numbers (128 == 128.0: a DataFrame column with gaps holds floats).
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from gapbench.config.identity import NEUTRAL_DEFAULTS, PRESENTATION_KEYS, PRESENTATION_TRAINER_KEYS

PREFIX = "cfg."
NOT_CONDITION = {"seed", "trainer.max_time", "hydra"}


def not_a_condition(key: str) -> bool:
    """Whether a config key (without `cfg.`) is left out of every condition: the one list of them."""
    top = key.split(".", 1)[0]
    if key in NOT_CONDITION or top in NOT_CONDITION or top in PRESENTATION_KEYS:
        return True
    return top == "trainer" and key.split(".", 1)[-1] in PRESENTATION_TRAINER_KEYS


def _value(v: Any) -> Any:
    """A JSON value as it compares across rows; None for 'absent'."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # numpy scalar
        v = v.item()
    if isinstance(v, bool) or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    return str(v)


def condition_keys(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The keys (without the `cfg.` prefix) and values that define a run's condition."""
    neutral = {(k if g is None else f"{g}.{k}"): _value(v) for (g, k), v in NEUTRAL_DEFAULTS.items()}  # None: top level
    out = {}
    for key, v in flat.items():
        if not str(key).startswith(PREFIX):
            continue
        key = str(key)[len(PREFIX):]
        v = _value(v)
        if v is None or not_a_condition(key) or neutral.get(key, object()) == v:
            continue
        out[key] = v
    return dict(sorted(out.items()))


def key_id(keys: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(dict(sorted(keys.items())), default=str).encode()).hexdigest()[:10]


def condition_id(flat: Mapping[str, Any]) -> str:
    """Short id of a run's condition, from its flattened config (`cfg.*` keys)."""
    return key_id(condition_keys(flat))


def assign(runs: pd.DataFrame) -> pd.DataFrame:
    """A copy of runs with its `condition` column (re)computed from the `cfg.*` columns."""
    cols = [c for c in runs.columns if str(c).startswith(PREFIX)]
    df = runs.copy()
    df["condition"] = [condition_id(dict(zip(cols, vals))) for vals in df[cols].itertuples(index=False, name=None)] \
        if len(df) else pd.Series(dtype=object)
    return df


def show(v: Any) -> str:
    if v is None:
        return "unset"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return f"{v:g}" if isinstance(v, float) else str(v)


def differences(key_sets: Mapping[str, Mapping[str, Any]], skip: Iterable[str] = ()) -> dict[str, str]:
    """{id: 'key=value, ...'} naming only the keys whose values differ between the given key sets."""
    skip = set(skip)
    keys = sorted({k for ks in key_sets.values() for k in ks} - skip)
    varying = [k for k in keys if len({json.dumps(ks.get(k), default=str) for ks in key_sets.values()}) > 1]
    return {cid: ", ".join(f"{k}={show(ks.get(k))}" for k in varying) for cid, ks in key_sets.items()}
