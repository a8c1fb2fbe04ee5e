"""JANET (van der Westhuizen & Lasenby 2018, "The unreasonable effectiveness of the forget gate"):
an LSTM with only its forget gate, and the state as output.

    s_t = W_f x_t + U_f h_{t-1} + b_f
    c~_t = tanh(W_c x_t + U_c h_{t-1} + b_c)
    h_t = sigmoid(s_t) * h_{t-1} + (1 - sigmoid(s_t - beta)) * c~_t
"""
import torch
from torch import nn

from gapbench.cells.base import SequenceModel


class JANET(SequenceModel):
    title = "JANET"
    matmul_blocks = (2, 2)  # H-wide blocks of the input and recurrent matmuls (the benchmark's FLOPs)

    def __init__(self, input_size, hidden_size, beta: float = 1.0):
        super().__init__()
        self.hidden_size, self.beta = hidden_size, beta
        self.inp = nn.Linear(input_size, 2 * hidden_size)                # [W_f; W_c], [b_f; b_c]
        self.rec = nn.Linear(hidden_size, 2 * hidden_size, bias=False)   # [U_f; U_c]

    def initial_state(self, batch, device=None, dtype=None):
        return torch.zeros(batch, self.hidden_size, device=device, dtype=dtype or self.inp.weight.dtype)

    def step(self, x, h, gates=None):
        s, c = (self.inp(x) + self.rec(h)).chunk(2, -1)
        h = torch.sigmoid(s) * h + (1 - torch.sigmoid(s - self.beta)) * torch.tanh(c)
        if gates is not None:
            gates.update(forget=torch.sigmoid(s))
        return h, h

    def forward(self, x, state=None):
        h = self.initial_state(x.shape[0], x.device, x.dtype) if state is None else state
        outs = []
        for x_t in x.unbind(1):
            out, h = self.step(x_t, h)
            outs.append(out)
        return torch.stack(outs, 1), h
