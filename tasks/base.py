"""The one interface every benchmark task implements.

A task is built for one gap and one seed. It owns its data (generated or loaded), the model
architecture around the cell under test (embedding, read-out, encoder-decoder), its loss, and
how evaluation statistics reduce to metrics. `gapbench.train.lightning_module.GapModule` drives it through
Lightning:

    task = build_task("copy", gap=100, seed=0, batch_size=64, **opts)
    model = task.build_model(make_cell, hidden_size)   # make_cell(input_size) -> cell
    batch = task.train_batch(step, device)             # deterministic in (seed, step)
    loss, logs = task.training_loss(model, batch)
    outs = [task.eval_step(model, b) for b in task.eval_batches("test")]
    metrics = task.eval_metrics(outs)                  # has "loss" and task.score_name
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar

import torch
from torch import nn

MakeCell = Callable[[int], nn.Module]


class TaskError(ValueError):
    """Bad task input (gap, corpus, options): the message is shown to the user as one line."""


class Task(ABC):
    name: ClassVar[str]
    score_name: ClassVar[str]          # headline metric, a key of eval_metrics()
    higher_is_better: ClassVar[bool]
    gap_meaning: ClassVar[str]         # one line: what `gap` means for this task
    title: ClassVar[str]               # human name for tables and plots, e.g. "Copy memory"
    score_title: ClassVar[str]         # the headline metric in words, e.g. "recall accuracy"
    solved_text: ClassVar[str | None] = None  # the "solved" criterion in words; None: the task has none
    min_gap: ClassVar[int] = 1
    requires: ClassVar[tuple[str, ...]] = ()  # model capabilities it needs (gapbench.cells.CAPABILITIES)
    continuous_gap: ClassVar[bool] = True  # False: only some gaps are valid (translation's buckets); no horizon search

    def __init__(self, gap: int, seed: int, batch_size: int, **opts: Any):
        if not isinstance(gap, int) or isinstance(gap, bool) or gap < self.min_gap:
            raise TaskError(f"gap={gap!r} is invalid for task {self.name}: "
                            f"use an integer >= {self.min_gap} ({self.gap_meaning})")
        self.gap, self.seed, self.batch_size, self.opts = gap, seed, batch_size, opts

    # -- cheap checks and sizes, used before anything is loaded or allocated --
    @classmethod
    def check_options(cls, gap: int, **opts: Any) -> None:
        """Raise TaskError for bad options (a missing corpus file, a gap outside the buckets...)
        without loading data: run for every job of a sweep before the first one starts."""

    @classmethod
    def steps_for_gap(cls, gap: int, **opts: Any) -> int:
        """Time steps the cell is unrolled over in one training batch at this gap."""
        return gap

    @property
    def seq_len(self) -> int:
        return self.steps_for_gap(self.gap, **self.opts)

    # -- the headline score of a memoryless / trivial predictor, in the unit of `score_name` --
    @property
    @abstractmethod
    def baseline(self) -> float: ...

    @classmethod
    def solved_threshold(cls, baseline: float) -> float | None:
        """The headline score that counts as solved (reached, or beaten in the direction of
        `higher_is_better`), given the run's baseline; None where the task has no fixed criterion."""
        return None

    @classmethod
    def is_solved(cls, score: float, baseline: float) -> bool | None:
        """Whether `score` solves the task (None: no criterion). NaN never solves."""
        threshold = cls.solved_threshold(baseline)
        if threshold is None:
            return None
        if score != score:
            return False
        return score >= threshold if cls.higher_is_better else score <= threshold

    @classmethod
    def report_notes(cls, cfg: dict[str, Any]) -> list[str]:
        """Sentences the report prints above this task's table for runs with this config (flattened
        `cfg.*` keys of one condition): scoring choices a reader must know to compare numbers."""
        return []

    @abstractmethod
    def build_model(self, make_cell: MakeCell, hidden_size: int) -> nn.Module: ...

    @abstractmethod
    def train_batch(self, step: int, device: torch.device) -> Any:
        """The training batch of `step`, generated or sliced on `device`; same (seed, step) -> same batch."""

    @abstractmethod
    def eval_batches(self, split: str) -> list[Any]:
        """The fixed held-out batches of `split` ("val" or "test"), the same for every run with this seed."""

    @abstractmethod
    def training_loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss to minimise, extra scalars to log)."""

    @abstractmethod
    def eval_step(self, model: nn.Module, batch: Any) -> dict[str, Any]:
        """Statistics of one held-out batch, combined by eval_metrics (sums, counts, hypotheses...)."""

    @abstractmethod
    def eval_metrics(self, outputs: list[dict[str, Any]]) -> dict[str, float]:
        """Reduce eval_step outputs to metrics; must contain "loss" and `score_name`."""


def check_int(task: str | None, name: str, value: Any, lo: int, allow_none: bool = False) -> None:
    """One task option that must be an integer >= lo (or None where allowed): TaskError otherwise."""
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        where = f" for task {task}" if task else ""
        raise TaskError(f"{name}={value!r} is invalid{where}: use an integer >= {lo}" + (" or null" if allow_none else ""))


def seeded_generator(seed: int, stream: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator for one (seed, stream) pair: streams keep train steps and eval splits independent."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + stream) % (2**63 - 1))
    return g


class SyntheticTask(Task):
    """A task whose data is a generator function: training batches drawn on the device from
    (seed, step), val and test sets drawn once on the CPU from fixed streams of the seed."""

    def __init__(self, gap: int, seed: int, batch_size: int, val_size: int = 512, test_size: int = 2048,
                 eval_batch_size: int = 512):
        super().__init__(gap, seed, batch_size)
        self.val_size, self.test_size, self.eval_batch_size = val_size, test_size, eval_batch_size

    @abstractmethod
    def generate(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) for `batch` sequences at this task's gap, on the generator's device."""

    def train_batch(self, step, device):
        return self.generate(self.batch_size, seeded_generator(self.seed, 1 + step, device))

    def eval_batches(self, split):
        size = {"val": self.val_size, "test": self.test_size}[split]
        x, y = self.generate(size, seeded_generator(self.seed, -1 if split == "val" else -2))
        return list(zip(x.split(self.eval_batch_size), y.split(self.eval_batch_size)))
