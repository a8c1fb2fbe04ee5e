"""Peephole LSTM (Gers & Schmidhuber 2000): the gates also see the cell state through diagonal
peephole weights — input and forget gates see c_{t-1}, the output gate sees c_t.

    i  = sigmoid(W_i x + U_i h + p_i * c + b_i)
    f  = sigmoid(W_f x + U_f h + p_f * c + b_f)
    g  = tanh(W_g x + U_g h + b_g)
    c' = f * c + i * g
    o  = sigmoid(W_o x + U_o h + p_o * c' + b_o)
    h' = o * tanh(c')
"""
import torch
from torch import nn

from gapbench.cells._bptt import PeepholeLSTMFunction
from gapbench.cells._loop import Impl, LoopCell


class PeepholeLSTM(LoopCell):
    title = "LSTM (peephole)"
    matmul_blocks = (4, 4)  # H-wide blocks of the input and recurrent matmuls
    n_input_blocks = 4  # i, f, g, o

    def __init__(self, input_size, hidden_size, forget_bias: float = 1.0, impl: Impl = "bptt"):
        super().__init__(input_size, hidden_size, impl)
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.peephole = nn.Parameter(torch.empty(3, hidden_size))  # p_i, p_f, p_o
        self.reset_uniform()
        with torch.no_grad():
            self.bias[hidden_size:2 * hidden_size].fill_(forget_bias)

    def initial_state(self, batch, device=None, dtype=None):
        h = super().initial_state(batch, device, dtype)
        return h, torch.zeros_like(h)

    def pointwise(self, z, state, gates=None):
        _, c = state
        p_i, p_f, p_o = self.peephole
        i, f, g, o = z.chunk(4, -1)
        i = torch.sigmoid(i + p_i * c)
        f = torch.sigmoid(f + p_f * c)
        c = f * c + i * torch.tanh(g)
        o = torch.sigmoid(o + p_o * c)
        h = o * torch.tanh(c)
        if gates is not None:
            gates.update(input=i, forget=f, output=o)
        return h, (h, c)

    def fast_forward(self, x, state):
        out, h, c = PeepholeLSTMFunction.apply(x, self.weight_ih, self.bias, self.weight_hh, self.peephole, *state)
        return out, (h, c)
