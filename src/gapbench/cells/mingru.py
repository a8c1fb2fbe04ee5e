"""minGRU (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs All We Needed?", §3.1 and
Appendix B, the log-space version): a GRU whose gate and candidate see only the input, so the
recurrence is linear in h and trains by a parallel scan.

    z_t = sigmoid(W_z x_t + b_z)
    h~_t = g(W_h x_t + b_h),          g(v) = v + 1/2 (v >= 0), sigmoid(v) (v < 0)
    h_t = (1 - z_t) * h_{t-1} + z_t * h~_t

impl="scan" (default): all steps at once by the log-space scan (gapbench.cells._scan), with
log(1 - z) = -softplus(k), log z = -softplus(-k) for k = W_z x + b_z. impl="loop": the same
equations one step after another (the paper's sequential mode, after one matmul for the input
projections of all steps), differentiated by autograd; `step` is one of those steps.
Weights: nn.Linear's default initialisation. No output projection or normalisation (the paper's
language-model blocks add those around the cell; here the task's model does).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from gapbench.cells import _cuda
from gapbench.cells._scan import g, log_g, scan_log
from gapbench.cells.base import SequenceModel


class MinGRU(SequenceModel):
    title = "minGRU"
    matmul_blocks = (2, 0)  # z and h~ from x; no recurrent matmul
    saved_per_step = 10

    def __init__(self, input_size, hidden_size, impl: Literal["scan", "loop"] = "scan"):
        super().__init__()
        self.input_size, self.hidden_size, self.impl = input_size, hidden_size, impl
        self.linear = nn.Linear(input_size, 2 * hidden_size)  # [W_z; W_h]

    @classmethod
    def bench_runs(cls):
        return [{}, {"impl": "loop"}]

    def initial_state(self, batch, device=None, dtype=None):
        return torch.zeros(batch, self.hidden_size, device=device, dtype=dtype or self.linear.weight.dtype)

    def pointwise(self, kv, h, gates=None):
        """One step from the input projection [k, v] of x_t (no recurrent matmul)."""
        k, v = kv.chunk(2, -1)
        z = torch.sigmoid(k)
        h = (1 - z) * h + z * g(v)
        if gates is not None:
            gates.update(update=z)
        return h, h

    def step(self, x, h, gates=None):
        return self.pointwise(self.linear(x), h, gates)

    def forward(self, x, state=None):
        k, v = self.linear(x).chunk(2, -1)
        if self.impl == "scan":
            h = scan_log(-F.softplus(k), -F.softplus(-k) + log_g(v), state)
            return h, h[:, -1]
        if x.is_cuda and _cuda.FAST:  # the loop as fused compiled steps (cells._cuda)
            return _cuda.run_pointwise(self, torch.cat([k, v], -1), None, state, [])
        h = self.initial_state(x.shape[0], x.device, x.dtype) if state is None else state
        outs = []
        for k_t, v_t in zip(k.unbind(1), v.unbind(1)):
            z = torch.sigmoid(k_t)
            h = (1 - z) * h + z * g(v_t)
            outs.append(h)
        return torch.stack(outs, 1), h
