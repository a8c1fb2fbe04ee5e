"""IndRNN (Li, Li, Cook, Zhu & Gao 2018, "Independently Recurrent Neural Network (IndRNN): Building
a Longer and Deeper RNN"): every unit has one recurrent weight of its own, so the recurrence is
elementwise.

    h_t = relu(W x_t + u * h_{t-1} + b)

The recurrent-weight constraint (§3.1): with relu, a gradient travelling T steps back is scaled by
prod u; keeping |u| <= max_gain^(1/T) bounds that factor by max_gain (the paper uses 2), with T
the task's max_len. It is enforced as a projection: in training, every forward first clips u into
[-bound, bound] (the authors clip before each training step; the weights used are the same).

Initialisation (`recurrent_init`), with b = max_gain^(1/T):
* "authors" (default), as the authors' adding script (Sunnydreamrain/IndRNN_Theano_Lasagne,
  adding/adding.py: MAG=2, two layers, `U_bound = pow(MAG, 1/seq_len)`, `U_lowbound =
  pow(1/MAG, 1/seq_len)`): u ~ U(0, b) in every layer but the last, u ~ U(1/b, b) in the last one
  (near 1: long memory for the output). Their PyTorch code (Sunnydreamrain/IndRNN_pytorch,
  `u_lastlayer_ini`) gives only the top layer of any depth that range ("only the last one not
  all"), and a single layer is the last. The layer's place reaches it as `last_layer` from
  cells.build.
* "uniform01": u ~ U(0, 1) in every layer (IndRNN_onlyrecurrent.py's default; gapbench before issue 27).
Then W ~ N(0, 0.001^2) (adding.py's in2hidW), b = 0. The config stacks two layers by default
(cell.layers=2, the authors' adding depth); two layers of 128 units with their rate and batch is
experiment=indrnn_adding. `step` is one step of the same equations; forward projects all
inputs with one matmul and loops over time (elementwise only), differentiated by autograd.
"""
from __future__ import annotations

from typing import Annotated, Literal

import torch
from torch import nn

from gapbench.cells.base import OptionError, Range, SequenceModel


class IndRNN(SequenceModel):
    title = "IndRNN"
    matmul_blocks = (1, 0)  # W x; the recurrence is elementwise
    saved_per_step = 3

    def __init__(self, input_size, hidden_size, max_gain: Annotated[float, Range(1)] = 2.0,
                 recurrent_init: Literal["authors", "uniform01"] = "authors", max_len: int | None = None,
                 last_layer: bool = True):
        super().__init__()
        if max_len is None:
            raise OptionError("indrnn needs the task's max_len for its recurrent-weight bound max_gain^(1/max_len)")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.bound = max_gain ** (1.0 / max_len)
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size).normal_(0.0, 0.001))
        self.bias = nn.Parameter(torch.zeros(hidden_size))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size).uniform_(*self.init_range(recurrent_init, last_layer)))  # u
        self.constrain()

    def init_range(self, recurrent_init: str, last_layer: bool) -> tuple[float, float]:
        if recurrent_init == "uniform01":
            return 0.0, 1.0
        return (1.0 / self.bound, self.bound) if last_layer else (0.0, self.bound)

    @torch.no_grad()
    def constrain(self):
        self.weight_hh.clamp_(-self.bound, self.bound)

    def initial_state(self, batch, device=None, dtype=None):
        return torch.zeros(batch, self.hidden_size, device=device, dtype=dtype or self.weight_ih.dtype)

    def step(self, x, h, gates=None):
        h = torch.relu(x @ self.weight_ih.T + self.bias + self.weight_hh * h)
        return h, h

    def forward(self, x, state=None):
        if self.training:
            self.constrain()
        h = self.initial_state(x.shape[0], x.device, x.dtype) if state is None else state
        outs = []
        for xp_t in (x @ self.weight_ih.T + self.bias).unbind(1):
            h = torch.relu(torch.addcmul(xp_t, self.weight_hh, h))
            outs.append(h)
        return torch.stack(outs, 1), h
