"""Model shapes shared by tasks: a cell with a linear read-out."""
from __future__ import annotations

from torch import nn


class Tagger(nn.Module):
    """Runs `cell` over [B, T, I] and reads out every step ([B, T, O]) or only the last ([B, O])."""

    def __init__(self, cell: nn.Module, hidden_size: int, out_size: int, last_only: bool = False):
        super().__init__()
        self.cell, self.readout, self.last_only = cell, nn.Linear(hidden_size, out_size), last_only

    def forward(self, x):
        h, _ = self.cell(x)
        return self.readout(h[:, -1] if self.last_only else h)
