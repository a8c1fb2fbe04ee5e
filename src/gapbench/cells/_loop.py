"""Hand-written cells: the input projections of all time steps in one matmul, then a loop over time
that does only the recurrent part. `step` is the same math for a single x_t."""
from __future__ import annotations

import math

import torch
from torch import nn


class LoopCell(nn.Module):
    fused = False
    n_input_blocks: int  # how many H-sized blocks the input projection has

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(self.n_input_blocks * hidden_size, input_size))
        self.bias = nn.Parameter(torch.empty(self.n_input_blocks * hidden_size))

    def reset_uniform(self):
        """PyTorch's RNN initialisation: every weight and bias uniform in +-1/sqrt(hidden_size)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def initial_state(self, batch: int, device=None, dtype=None):
        return torch.zeros(batch, self.hidden_size, device=device, dtype=dtype or self.weight_ih.dtype)

    def project(self, x):
        return x @ self.weight_ih.T + self.bias

    def recur(self, x_proj, state, gates=None):
        """One step given the input projection of x_t: (h_t, new_state)."""
        raise NotImplementedError

    def step(self, x, state, gates=None):
        return self.recur(self.project(x), state, gates)

    def forward(self, x, state=None):
        if state is None:
            state = self.initial_state(x.shape[0], device=x.device, dtype=x.dtype)
        outs = []
        for x_proj in self.project(x).unbind(1):  # unbind, not x[:, t]: the latter's backward is O(T^2)
            h, state = self.recur(x_proj, state)
            outs.append(h)
        return torch.stack(outs, 1), state
