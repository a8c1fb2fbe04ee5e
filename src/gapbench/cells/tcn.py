"""Temporal convolutional network (Bai, Kolter & Koltun 2018, "An Empirical Evaluation of Generic
Convolutional and Recurrent Networks for Sequence Modeling", §3; reference code locuslab/TCN).

A stack of `levels` residual blocks; block l (dilation d = 2^l, kernel size k) computes

    y   = dropout(relu(causal_conv_d(x)))          causal: output t sees x_t, x_{t-d}, ..., x_{t-(k-1)d}
    y   = dropout(relu(causal_conv_d(y)))
    out = relu(y + x)                             x through a 1x1 conv where the widths differ

Both convolutions are weight-normalised (Salimans & Kingma 2016; torch.nn.utils.parametrizations.
weight_norm, w = g v / ||v|| per output channel). Every block has hidden_size channels. The
receptive field is 1 + 2 (k - 1) (2^levels - 1); with `levels: null` (default) the model takes the
fewest levels whose receptive field covers the task's max_len, so the first input can reach the
last output. `kernel_size` 8 is Bai et al.'s copy-memory setting (adding: 7, PTB: 3); their dropout
is 0 on copy/adding (0.45 word-, 0.1 char-level PTB): `conv_dropout`.

Departures, all without effect on the function: causal padding is applied on the left instead of
padding both sides and chopping the right ("Chomp1d"); the reference code draws the convolutions'
weights from N(0, 0.01) *after* weight norm is registered, which the weight-norm hook overwrites at
the first forward, so its effective initialisation is PyTorch's default for v with g = ||v|| — what
this module does; the 1x1 residual convolution's N(0, 0.01) does take effect there and here.
One departure with effect (on the start of training only): locuslab/TCN's adding_problem/model.py and
copy_memory/model.py draw the final linear layer's weights from N(0, 0.01); in gapbench that read-out
belongs to the task and is shared by every model, so it keeps PyTorch's default initialisation.
Not recurrent: no state and no `step`; `layers` must be 1 (the depth is `levels`).
"""
from __future__ import annotations

from typing import Annotated

import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from gapbench.cells.base import OptionError, Range, SequenceModel

SAVED_PER_LEVEL = 10  # [B, T, H] tensors per block kept for backward: 2 padded inputs, 2 conv outputs,
#                      2 relus, 2 dropout masks, the residual sum and its relu


def receptive_field(kernel_size: int, levels: int) -> int:
    return 1 + 2 * (kernel_size - 1) * (2 ** levels - 1)


def levels_for(max_len: int, kernel_size: int) -> int:
    """The fewest levels whose receptive field covers max_len steps."""
    levels = 1
    while receptive_field(kernel_size, levels) < max_len:
        levels += 1
    return levels


class TemporalBlock(nn.Module):
    def __init__(self, n_in: int, n_out: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.left_pad = (kernel_size - 1) * dilation
        self.conv1 = weight_norm(nn.Conv1d(n_in, n_out, kernel_size, dilation=dilation))
        self.conv2 = weight_norm(nn.Conv1d(n_out, n_out, kernel_size, dilation=dilation))
        self.drop = nn.Dropout(dropout)
        self.downsample = nn.Conv1d(n_in, n_out, 1) if n_in != n_out else None
        if self.downsample is not None:
            nn.init.normal_(self.downsample.weight, 0.0, 0.01)

    def causal(self, conv, x):
        return conv(F.pad(x, (self.left_pad, 0)))

    def forward(self, x):  # x [B, C, T]
        y = self.drop(F.relu(self.causal(self.conv1, x)))
        y = self.drop(F.relu(self.causal(self.conv2, y)))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class TCN(SequenceModel):
    title = "TCN"
    recurrent = False
    has_step = False

    def __init__(self, input_size, hidden_size, kernel_size: Annotated[int, Range(2)] = 8,
                 levels: Annotated[int | None, Range(1)] = None,
                 conv_dropout: Annotated[float, Range(0, 1, hi_open=True)] = 0.0, max_len: int | None = None):
        super().__init__()
        if levels is None:
            if max_len is None:
                raise OptionError("tcn needs the task's max_len to size its receptive field, or cell.levels")
            levels = levels_for(max_len, kernel_size)
        self.input_size, self.hidden_size, self.levels = input_size, hidden_size, levels
        self.receptive_field = receptive_field(kernel_size, levels)
        self.blocks = nn.Sequential(*(TemporalBlock(input_size if i == 0 else hidden_size, hidden_size, kernel_size,
                                                    2 ** i, conv_dropout) for i in range(levels)))

    def forward(self, x, state=None):
        if state is not None:
            raise ValueError("tcn is not recurrent: it takes no state")
        return self.blocks(x.transpose(1, 2)).transpose(1, 2), None

    @staticmethod
    def _levels(seq_len, kernel_size=8, levels=None):
        return levels if levels is not None else levels_for(seq_len, kernel_size)

    @classmethod
    def activation_bytes(cls, batch, seq_len, hidden_size, bytes_per_value=4, kernel_size=8, levels=None, **options):
        return cls._levels(seq_len, kernel_size, levels) * SAVED_PER_LEVEL * batch * seq_len * hidden_size * bytes_per_value

    @classmethod
    def matmul_flops(cls, batch, seq_len, input_size, hidden_size, kernel_size=8, levels=None, **options):
        n = cls._levels(seq_len, kernel_size, levels)
        per_token = kernel_size * (input_size * hidden_size + (2 * n - 1) * hidden_size * hidden_size)
        per_token += input_size * hidden_size if input_size != hidden_size else 0  # the 1x1 residual conv
        return 3 * 2.0 * batch * seq_len * per_token
