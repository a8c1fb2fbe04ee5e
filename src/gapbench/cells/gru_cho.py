"""GRU of Cho et al. 2014, as TensorFlow's GRUCell: the reset gate scales h *before* the matmul.

    r, u = sigmoid(W [x, h] + b)
    c    = tanh(W_c [x, r * h] + b_c)
    h'   = u * h + (1 - u) * c
"""
import torch
from torch import nn

from gapbench.cells._bptt import GRUChoFunction
from gapbench.cells._loop import Impl, LoopCell


class GRUCho(LoopCell):
    title = "GRU (Cho et al. 2014)"
    matmul_blocks = (3, 3)  # H-wide blocks of the input and recurrent matmuls
    n_input_blocks = 3  # r, u from W; c from W_c

    def __init__(self, input_size, hidden_size, impl: Impl = "bptt"):
        super().__init__(input_size, hidden_size, impl)
        self.weight_hh = nn.Parameter(torch.empty(2 * hidden_size, hidden_size))      # h -> r, u
        self.weight_hc = nn.Parameter(torch.empty(hidden_size, hidden_size))          # r*h -> c
        self.reset_uniform()

    def recur(self, x_proj, h, gates=None):
        x_ru, x_c = x_proj.split([2 * self.hidden_size, self.hidden_size], -1)
        r, u = torch.sigmoid(x_ru + h @ self.weight_hh.T).chunk(2, -1)
        c = torch.tanh(x_c + (r * h) @ self.weight_hc.T)
        h = u * h + (1 - u) * c
        if gates is not None:
            gates.update(reset=r, update=u)
        return h, h

    def fast_forward(self, x, h):
        out, h = GRUChoFunction.apply(x, self.weight_ih, self.bias, self.weight_hh, self.weight_hc, h)
        return out, h
