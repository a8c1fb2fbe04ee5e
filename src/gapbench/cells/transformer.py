"""A small causal decoder-only Transformer (Vaswani et al. 2017; the pre-LayerNorm GPT-2 block of
Radford et al. 2019), the attention comparator: every output sees all earlier inputs directly.

    h_0 = W_in x_t + p_t                         p_t: learned position embeddings, max_len of them
    a   = h + MultiHeadAttention(LN(h))          causal: position t attends to positions <= t
    h'  = a + W_2 gelu(W_1 LN(a))                W_1: H -> ff_mult H
    out = LN(h_depth)

Blocks are torch.nn.TransformerEncoderLayer(norm_first=True, activation="gelu") with a causal mask;
`block_dropout` is its dropout (attention weights, both residual branches). The positions are sized
by the task's max_len (a longer input is refused); they start at N(0, 0.02) as in GPT-2, the other
weights at PyTorch's defaults. Not recurrent: no state and no `step`; `layers` must be 1 (the depth
is `depth`). hidden_size must be a multiple of `heads`.
"""
from __future__ import annotations

from typing import Annotated

import torch
from torch import nn

from gapbench.cells.base import OptionError, Range, SequenceModel


class Transformer(SequenceModel):
    title = "Transformer (causal)"
    recurrent = False
    has_step = False

    def __init__(self, input_size, hidden_size, depth: Annotated[int, Range(1)] = 2,
                 heads: Annotated[int, Range(1)] = 4, ff_mult: Annotated[int, Range(1)] = 4,
                 block_dropout: Annotated[float, Range(0, 1, hi_open=True)] = 0.0, max_len: int | None = None):
        super().__init__()
        type(self).check(hidden_size, heads=heads)
        if max_len is None:
            raise OptionError("transformer needs the task's max_len to size its position embeddings")
        self.input_size, self.hidden_size, self.max_len = input_size, hidden_size, max_len
        self.embed = nn.Linear(input_size, hidden_size)
        self.pos = nn.Parameter(torch.empty(max_len, hidden_size).normal_(0.0, 0.02))
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(hidden_size, heads, ff_mult * hidden_size, block_dropout, activation="gelu",
                                       batch_first=True, norm_first=True) for _ in range(depth))
        self.norm = nn.LayerNorm(hidden_size)

    @classmethod
    def check(cls, hidden_size, heads=4, **options):
        if hidden_size % heads:
            raise OptionError(f"cell.heads={heads} does not divide cell.hidden_size={hidden_size}; "
                              "valid: a divisor of hidden_size")

    def forward(self, x, state=None):
        if state is not None:
            raise ValueError("transformer is not recurrent: it takes no state")
        T = x.shape[1]
        if T > self.max_len:
            raise ValueError(f"transformer: input of {T} steps, but it has positions for max_len={self.max_len}")
        h = self.embed(x) + self.pos[:T]
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=x.device, dtype=h.dtype)
        for block in self.blocks:
            h = block(h, src_mask=mask, is_causal=True)
        return self.norm(h), None

    @classmethod
    def activation_bytes(cls, batch, seq_len, hidden_size, bytes_per_value=4, depth=2, heads=4, ff_mult=4, **options):
        # no T x T term: with is_causal, scaled_dot_product_attention runs a flash kernel (CPU and CUDA) that
        # keeps only a log-sum-exp per query (measured: B=4, T=3000, H=32 peaks at 106 MB, one T x T matrix
        # per block would be 549 MB)
        per_block = batch * seq_len * (hidden_size * (14 + 3 * ff_mult) + heads)
        return (depth * per_block + 2 * batch * seq_len * hidden_size) * bytes_per_value

    @classmethod
    def matmul_flops(cls, batch, seq_len, input_size, hidden_size, depth=2, heads=4, ff_mult=4, **options):
        per_token = input_size * hidden_size + depth * ((4 + 2 * ff_mult) * hidden_size ** 2  # qkv, out, ff
                                                        + 2 * seq_len * hidden_size)         # q k^T, a v
        return 3 * 2.0 * batch * seq_len * per_token
