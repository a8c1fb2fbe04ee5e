"""LSTM with forget gate (Hochreiter & Schmidhuber 1997; Gers et al. 2000), as nn.LSTM computes it.

    i, f, g, o = sigmoid/sigmoid/tanh/sigmoid(W_ih x + b_ih + W_hh h + b_hh)
    c' = f * c + i * g
    h' = o * tanh(c')

`forget_bias` is the forget gate's effective bias at initialisation (Jozefowicz et al. 2015
recommend 1.0). nn.LSTM adds two bias vectors, so it goes into b_ih and b_hh's forget slice is 0.
"""
import torch
from torch import nn

from gapbench.cells._fused import FusedCell


class LSTM(FusedCell):
    title = "LSTM"
    matmul_blocks = (4, 4)  # H-wide blocks of the input and recurrent matmuls
    kernel = nn.LSTM

    def __init__(self, input_size, hidden_size, forget_bias: float = 1.0):
        super().__init__(input_size, hidden_size)
        H = hidden_size
        with torch.no_grad():
            self.b_ih[H:2 * H].fill_(forget_bias)
            self.b_hh[H:2 * H].zero_()

    def initial_state(self, batch, device=None, dtype=None):
        h = super().initial_state(batch, device, dtype)
        return h, torch.zeros_like(h)

    def forward(self, x, state=None):
        state = None if state is None else (state[0].unsqueeze(0), state[1].unsqueeze(0))
        out, (h, c) = self.rnn(x, state)
        return out, (h.squeeze(0), c.squeeze(0))

    def step(self, x, state, gates=None):
        h, c = state
        i, f, g, o = (x @ self.w_ih.T + self.b_ih + h @ self.w_hh.T + self.b_hh).chunk(4, -1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c + i * g
        h = o * torch.tanh(c)
        if gates is not None:
            gates.update(input=i, forget=f, output=o)
        return h, (h, c)
