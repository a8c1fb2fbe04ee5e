"""Cells whose function a fused PyTorch kernel computes exactly (nn.RNN / nn.GRU / nn.LSTM)."""
from __future__ import annotations

import torch
from torch import nn

from gapbench.cells.base import SequenceModel


class FusedCell(SequenceModel):
    """forward() runs the fused kernel; step() is the same math written out, on the same parameters."""

    fused = True
    kernel: type[nn.RNNBase]

    def __init__(self, input_size: int, hidden_size: int, **kernel_opts):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.rnn = self.kernel(input_size, hidden_size, batch_first=True, **kernel_opts)

    # parameters under the names the equations use
    @property
    def w_ih(self):
        return self.rnn.weight_ih_l0

    @property
    def w_hh(self):
        return self.rnn.weight_hh_l0

    @property
    def b_ih(self):
        return self.rnn.bias_ih_l0

    @property
    def b_hh(self):
        return self.rnn.bias_hh_l0

    def initial_state(self, batch: int, device=None, dtype=None):
        return torch.zeros(batch, self.hidden_size, device=device, dtype=dtype or self.w_hh.dtype)

    def forward(self, x, state=None):
        out, h = self.rnn(x, None if state is None else state.unsqueeze(0))
        return out, h.squeeze(0)
