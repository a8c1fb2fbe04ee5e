"""GRU in the PyTorch / cuDNN form: the reset gate scales the hidden projection *after* the matmul.

    r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h
"""
import torch
from torch import nn

from gapbench.cells._fused import FusedCell


class GRU(FusedCell):
    title = "GRU"
    matmul_blocks = (3, 3)  # H-wide blocks of the input and recurrent matmuls
    kernel = nn.GRU

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)

    def step(self, x, h, gates=None):
        x_r, x_z, x_n = (x @ self.w_ih.T + self.b_ih).chunk(3, -1)
        h_r, h_z, h_n = (h @ self.w_hh.T + self.b_hh).chunk(3, -1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        h = (1 - z) * n + z * h
        if gates is not None:
            gates.update(reset=r, update=z)
        return h, h
