"""LSTM with coupled input and forget gates (CIFG; Greff et al. 2017): f = 1 - i.

    i  = sigmoid(W_i x + U_i h + b_i),   f = 1 - i
    g  = tanh(W_g x + U_g h + b_g)
    o  = sigmoid(W_o x + U_o h + b_o)
    c' = f * c + i * g
    h' = o * tanh(c')

`forget_bias` b makes the forget gate start at sigmoid(b), as in the other LSTMs: since
f = 1 - sigmoid(b_i) = sigmoid(-b_i), the input-gate bias starts at -b.
"""
import torch
from torch import nn

from gapbench.cells._bptt import CIFGLSTMFunction
from gapbench.cells._loop import Impl, LoopCell


class CIFGLSTM(LoopCell):
    title = "LSTM (CIFG)"
    matmul_blocks = (3, 3)  # H-wide blocks of the input and recurrent matmuls
    n_input_blocks = 3  # i, g, o

    def __init__(self, input_size, hidden_size, forget_bias: float = 1.0, impl: Impl = "bptt"):
        super().__init__(input_size, hidden_size, impl)
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
        self.reset_uniform()
        with torch.no_grad():
            self.bias[:hidden_size].fill_(-forget_bias)

    def initial_state(self, batch, device=None, dtype=None):
        h = super().initial_state(batch, device, dtype)
        return h, torch.zeros_like(h)

    def pointwise(self, z, state, gates=None):
        _, c = state
        i, g, o = z.chunk(3, -1)
        i, g, o = torch.sigmoid(i), torch.tanh(g), torch.sigmoid(o)
        f = 1 - i
        c = f * c + i * g
        h = o * torch.tanh(c)
        if gates is not None:
            gates.update(input=i, forget=f, output=o)
        return h, (h, c)

    def fast_forward(self, x, state):
        out, h, c = CIFGLSTMFunction.apply(x, self.weight_ih, self.bias, self.weight_hh, *state)
        return out, (h, c)
