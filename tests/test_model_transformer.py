"""The causal Transformer against its equations in float64, and a case computed by hand. Causality
for every non-recurrent model is checked in tests/test_contract.py."""
import math

import pytest
import torch
import torch.nn.functional as F

from gapbench import cells

B, T, I, H, HEADS = 2, 6, 3, 8, 2


def layer_norm(x, ln):
    mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    return (x - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def attention(x, blk, heads):
    Bx, Tx, Hx = x.shape
    d = Hx // heads
    q, k, v = (x @ blk.self_attn.in_proj_weight.T + blk.self_attn.in_proj_bias).chunk(3, -1)
    split = lambda t: t.view(Bx, Tx, heads, d).transpose(1, 2)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    future = torch.triu(torch.ones(Tx, Tx, dtype=torch.bool), 1)
    a = scores.masked_fill(future, -math.inf).softmax(-1) @ v
    return a.transpose(1, 2).reshape(Bx, Tx, Hx) @ blk.self_attn.out_proj.weight.T + blk.self_attn.out_proj.bias


def reference(model, x, heads=HEADS):
    h = x @ model.embed.weight.T + model.embed.bias + model.pos[:x.shape[1]]
    for blk in model.blocks:
        h = h + attention(layer_norm(h, blk.norm1), blk, heads)
        ff = F.gelu(layer_norm(h, blk.norm2) @ blk.linear1.weight.T + blk.linear1.bias)
        h = h + ff @ blk.linear2.weight.T + blk.linear2.bias
    return layer_norm(h, model.norm)


def make(**opts):
    torch.manual_seed(0)
    model = cells.build("transformer", I, H, heads=HEADS, max_len=T, **opts).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.empty_like(p).uniform_(-0.3, 0.3))  # non-default values everywhere (LN gains, biases)
    return model


@pytest.mark.parametrize("train", [False, True])
def test_matches_float64_equations(train):
    model = make(depth=2).train(train)  # train: the plain path; eval: PyTorch's fused inference path
    x = torch.randn(B, T, I, dtype=torch.float64, requires_grad=True)
    out, state = model(x)
    ref = reference(model, x)
    assert state is None and out.shape == (B, T, H)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    if train:
        w = torch.randn_like(out)
        params = [x, *model.parameters()]
        for g, r in zip(torch.autograd.grad((out * w).sum(), params), torch.autograd.grad((ref * w).sum(), params)):
            torch.testing.assert_close(g, r, atol=1e-9, rtol=1e-9)


def test_hand_computed_uniform_attention_is_the_running_mean_of_values():
    """With W_q = W_k = 0 every score is equal, so position t averages the values of positions 0..t:
    attention output at t = mean_{s<=t} v_s (here with identity value and output projections)."""
    model = cells.build("transformer", 2, 2, depth=1, heads=1, max_len=3).double()
    blk = model.blocks[0]
    with torch.no_grad():
        blk.self_attn.in_proj_weight.zero_()
        blk.self_attn.in_proj_bias.zero_()
        blk.self_attn.in_proj_weight[4:].copy_(torch.eye(2))   # W_v = I
        blk.self_attn.out_proj.weight.copy_(torch.eye(2))
        blk.self_attn.out_proj.bias.zero_()
    v = torch.tensor([[[1.0, -1.0], [3.0, 1.0], [-4.0, 3.0]]], dtype=torch.float64)
    got = attention(v, blk, 1)
    torch.testing.assert_close(got, torch.tensor([[[1.0, -1.0], [2.0, 0.0], [0.0, 1.0]]], dtype=torch.float64))
    torch.testing.assert_close(blk.self_attn(v, v, v, attn_mask=torch.nn.Transformer.generate_square_subsequent_mask(
        3, dtype=torch.float64), need_weights=False)[0], got)


def test_positions_sized_by_max_len_and_heads_checked():
    model = cells.build("transformer", I, H, heads=HEADS, max_len=T)
    assert model.pos.shape == (T, H)
    with pytest.raises(ValueError, match="max_len=6"):
        model(torch.randn(1, T + 1, I))
    with pytest.raises(cells.OptionError, match="cell.heads=3 does not divide cell.hidden_size=8"):
        cells.build("transformer", I, H, heads=3, max_len=T)
