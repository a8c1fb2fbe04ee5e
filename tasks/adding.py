"""Adding problem (Hochreiter & Schmidhuber 1997; setting of Bai, Kolter & Koltun 2018, §4.2). gap = T.

Input [T, 2]: channel 0 holds T numbers drawn uniformly from [0, 1]; channel 1 is 0 except at
exactly two positions, one in the first half and one in the second half of the sequence.
Target: the sum of the two marked numbers. Predicting the mean, 1, scores MSE = Var = 1/6.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from gapbench.models import Tagger
from gapbench.tasks.base import SyntheticTask


def adding_batch(batch: int, T: int, generator: torch.Generator, device=None):
    """(x [batch, T, 2], y [batch])."""
    device = device or generator.device
    values = torch.rand(batch, T, generator=generator, device=device)
    first = torch.randint(0, T // 2, (batch,), generator=generator, device=device)
    second = torch.randint(T // 2, T, (batch,), generator=generator, device=device)
    marks = torch.zeros(batch, T, device=device)
    rows = torch.arange(batch, device=device)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    y = values[rows, first] + values[rows, second]
    return torch.stack([values, marks], dim=-1), y


class Adding(SyntheticTask):
    name = "adding"
    score_name = "mse"
    higher_is_better = False
    gap_meaning = "T, the sequence length; the two marked numbers lie up to T-1 steps before the answer"
    title = "Adding problem"
    score_title = "MSE"
    solved_text = "MSE ≤ 1% of the baseline (1/6 × 0.01 ≈ 0.00167)"

    @classmethod
    def solved_threshold(cls, baseline):
        return 0.01 * baseline
    min_gap = 2

    @property
    def baseline(self):
        return 1.0 / 6.0

    def build_model(self, make_cell, hidden_size):
        return Tagger(make_cell(2), hidden_size, 1, last_only=True)

    def generate(self, batch, generator):
        return adding_batch(batch, self.gap, generator)

    def training_loss(self, model, batch):
        x, y = batch
        return F.mse_loss(model(x).squeeze(-1), y), {}

    def eval_step(self, model, batch):
        x, y = batch
        return {"se_sum": F.mse_loss(model(x).squeeze(-1), y, reduction="sum").item(), "n": len(y)}

    def eval_metrics(self, outputs):
        mse = sum(o["se_sum"] for o in outputs) / sum(o["n"] for o in outputs)
        return {"loss": mse, "mse": mse}
