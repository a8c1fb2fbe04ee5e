"""Hand-written cells: the input projections of all time steps in one matmul, then a loop over time
that does only the recurrent part. `step` is the same math for a single x_t.

Two implementations of forward(), chosen by the `impl` option:
* "bptt" (default): the fast path. On CPU a custom autograd.Function with hand-written
  backpropagation through time (gapbench.cells._bptt), about 1.5-2x faster than autograd there; on
  CUDA, for a cell that defines `pointwise`, that function compiled into fused kernels with the
  recurrent matmul outside and a CUDA graph over the sequence (gapbench.cells._cuda); see
  docs/performance.md.
* "autograd": the plain loop over `recur` below, differentiated by autograd (the reference).

What a subclass provides: `n_input_blocks` (H-sized blocks of the input projection), `matmul_blocks`
and `title` (cells.base), its parameters in `__init__` (`weight_ih` and `bias` come from here, the
recurrent matrix is `weight_hh`), `initial_state` where the state is not one tensor h, and its step:
either `pointwise(z, state)`, the elementwise work after the recurrent matmul z = x_proj + h @ W_hh^T
(then `recur` is derived and the CUDA fast path applies), or `recur(x_proj, state)` itself where a step
is not one matmul followed by elementwise work. `fast_forward` (a hand-written backward for the CPU)
is optional: without it declare `impl: Impl = "autograd"` as the default.
"""
from __future__ import annotations

import math
import typing
from typing import Literal

import torch
from torch import nn

from gapbench.cells import _cuda
from gapbench.cells.base import SequenceModel

Impl = Literal["bptt", "autograd"]  # the `impl` option of the hand-written cells


class LoopCell(SequenceModel):
    n_input_blocks: int  # how many H-sized blocks the input projection has
    IMPLS = typing.get_args(Impl)

    def __init__(self, input_size: int, hidden_size: int, impl: str = "bptt"):
        super().__init__()
        if impl not in self.IMPLS:
            raise ValueError(f"{type(self).__name__}: unknown impl '{impl}'; valid: {', '.join(self.IMPLS)}")
        self.input_size, self.hidden_size, self.impl = input_size, hidden_size, impl
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

    def pointwise(self, z, state, gates=None):
        """The step after its recurrent matmul, z = x_proj + h @ W_hh^T with h = the state's first
        tensor: (h_t, new_state). A cell defining it gets `recur` and the CUDA fast path from it."""
        raise NotImplementedError

    @property
    def cuda_pointwise(self) -> bool:
        """Whether a step is exactly one recurrent matmul then `pointwise` (gapbench.cells._cuda)."""
        return type(self).pointwise is not LoopCell.pointwise

    def recur(self, x_proj, state, gates=None):
        """One step given the input projection of x_t: (h_t, new_state)."""
        if not self.cuda_pointwise:
            raise NotImplementedError(f"{type(self).__name__} defines neither `pointwise` nor `recur`")
        h = state[0] if isinstance(state, tuple) else state
        return self.pointwise(x_proj + h @ self.weight_hh.T, state, gates)

    def step(self, x, state, gates=None):
        return self.recur(self.project(x), state, gates)

    def fast_forward(self, x, state):
        """(outputs, final_state) by the cell's custom autograd.Function."""
        raise NotImplementedError(f"{type(self).__name__} has no hand-written backward (fast_forward); "
                                  "declare `impl: Impl = \"autograd\"` as its default or write one")

    def forward(self, x, state=None):
        if x.dim() != 3 or x.shape[1] == 0:
            raise ValueError(f"expected x of shape [batch, time>0, {self.input_size}], got {tuple(x.shape)}")
        if state is None:
            state = self.initial_state(x.shape[0], device=x.device, dtype=x.dtype)
        if self.impl == "bptt":
            if x.is_cuda and _cuda.FAST and self.cuda_pointwise:
                return _cuda.pointwise_sequence(self, x, state)
            return self.fast_forward(x, state)
        return self.autograd_forward(x, state)

    def autograd_forward(self, x, state):
        outs = []
        for x_proj in self.project(x).unbind(1):  # unbind, not x[:, t]: the latter's backward is O(T^2)
            h, state = self.recur(x_proj, state)
            outs.append(h)
        return torch.stack(outs, 1), state
