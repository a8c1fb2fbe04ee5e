"""Elman tanh RNN: h' = tanh(W_ih x + b_ih + W_hh h + b_hh)."""
import torch
from torch import nn

from gapbench.cells._fused import FusedCell


class ElmanRNN(FusedCell):
    title = "tanh RNN"
    matmul_blocks = (1, 1)  # H-wide blocks of the input and recurrent matmuls
    kernel = nn.RNN

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size, nonlinearity="tanh")

    def step(self, x, h, gates=None):
        h = torch.tanh(x @ self.w_ih.T + self.b_ih + h @ self.w_hh.T + self.b_hh)
        return h, h
