"""minLSTM (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs All We Needed?", §3.2 and
Appendix B, the log-space version): an LSTM whose gates and candidate see only the input, with the
forget and input gates normalised to sum to one (time-independent scale), so the recurrence is
linear in h and trains by a parallel scan.

    f_t = sigmoid(W_f x_t + b_f),  i_t = sigmoid(W_i x_t + b_i)
    f'_t = f_t / (f_t + i_t),      i'_t = i_t / (f_t + i_t)
    h~_t = g(W_h x_t + b_h),        g(v) = v + 1/2 (v >= 0), sigmoid(v) (v < 0)
    h_t = f'_t * h_{t-1} + i'_t * h~_t

impl="scan" (default): all steps at once by the log-space scan (gapbench.cells._scan), with
d = softplus(-k_f) - softplus(-k_i), log f' = -softplus(d), log i' = -softplus(-d). impl="loop":
the same equations one step after another, differentiated by autograd; `step` is one such step.
Weights: nn.Linear's default initialisation; no output projection (the task's model has its own).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from gapbench.cells import _cuda
from gapbench.cells._scan import g, log_g, scan_log
from gapbench.cells.base import SequenceModel


class MinLSTM(SequenceModel):
    title = "minLSTM"
    matmul_blocks = (3, 0)  # f, i and h~ from x; no recurrent matmul
    saved_per_step = 12

    def __init__(self, input_size, hidden_size, impl: Literal["scan", "loop"] = "scan"):
        super().__init__()
        self.input_size, self.hidden_size, self.impl = input_size, hidden_size, impl
        self.linear = nn.Linear(input_size, 3 * hidden_size)  # [W_f; W_i; W_h]

    @classmethod
    def bench_runs(cls):
        return [{}, {"impl": "loop"}]

    def initial_state(self, batch, device=None, dtype=None):
        return torch.zeros(batch, self.hidden_size, device=device, dtype=dtype or self.linear.weight.dtype)

    @staticmethod
    def _gates(k_f, k_i):
        f, i = torch.sigmoid(k_f), torch.sigmoid(k_i)
        return f / (f + i), i / (f + i)

    def pointwise(self, kkv, h, gates=None):
        """One step from the input projection [k_f, k_i, v] of x_t (no recurrent matmul)."""
        k_f, k_i, v = kkv.chunk(3, -1)
        f, i = self._gates(k_f, k_i)
        h = f * h + i * g(v)
        if gates is not None:
            gates.update(forget=f, input=i)
        return h, h

    def step(self, x, h, gates=None):
        return self.pointwise(self.linear(x), h, gates)

    def forward(self, x, state=None):
        k_f, k_i, v = self.linear(x).chunk(3, -1)
        if self.impl == "scan":
            d = F.softplus(-k_f) - F.softplus(-k_i)
            h = scan_log(-F.softplus(d), -F.softplus(-d) + log_g(v), state)
            return h, h[:, -1]
        if x.is_cuda and _cuda.FAST:  # the loop as fused compiled steps (cells._cuda)
            return _cuda.run_pointwise(self, torch.cat([k_f, k_i, v], -1), None, state, [])
        h = self.initial_state(x.shape[0], x.device, x.dtype) if state is None else state
        outs = []
        for kf_t, ki_t, v_t in zip(k_f.unbind(1), k_i.unbind(1), v.unbind(1)):
            f, i = self._gates(kf_t, ki_t)
            h = f * h + i * g(v_t)
            outs.append(h)
        return torch.stack(outs, 1), h
