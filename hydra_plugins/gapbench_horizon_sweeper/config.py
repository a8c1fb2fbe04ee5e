from dataclasses import dataclass
from typing import Dict, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class HorizonSweeperConf:
    """`hydra/sweeper=horizon`: per combination of the other swept keys, bracket the memory horizon
    (see gapbench.sweep.horizon_search); the command line's `gap` is where each search starts."""

    _target_: str = "hydra_plugins.gapbench_horizon_sweeper.horizon_sweeper.HorizonSweeper"
    factor: float = 1.5           # stop when the bracket [solved gap, failed gap) is within this ratio
    grow: float = 2.0             # the gap grows (or shrinks) by this ratio until a bracket is found
    min_gap: Optional[int] = None  # smallest gap tried; null = the task's min_gap
    max_gap: int = 2000           # largest gap tried; a cell that solves it gets horizon ">= max_gap"
    params: Optional[Dict[str, str]] = None  # swept keys from a config file, as for the basic sweeper
    lr_from: Optional[str] = None  # a learning-rate selection (python -m gapbench.analysis.lr_selection): each cell's optim.lr


ConfigStore.instance().store(group="hydra/sweeper", name="horizon", node=HorizonSweeperConf,
                             provider="gapbench")
