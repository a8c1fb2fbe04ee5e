"""TCN (Bai et al. 2018) against its equations: a case computed by hand, a float64 loop over the
convolution taps, weight normalisation, and the receptive field sized by max_len. Causality for every
non-recurrent model is checked in tests/test_contract.py."""
import pytest
import torch
from torch.nn.utils import parametrize

from gapbench import cells
from gapbench.cells.tcn import levels_for, receptive_field

relu = torch.relu


def test_hand_computed_case():
    """One level, k=2, one channel: conv1 w=[0.5, 1] (taps x_{t-1}, x_t), b=0; conv2 w=[1, -1], b=0.5.
    x = [1, -2, 3]: conv1 -> [1, -1.5, 2], relu -> [1, 0, 2]; conv2 -> [-0.5, 1.5, -1.5],
    relu -> [0, 1.5, 0]; + x -> [1, -0.5, 3], relu -> [1, 0, 3]."""
    model = cells.build("tcn", 1, 1, kernel_size=2, max_len=3).double()
    assert model.levels == 1 and model.receptive_field == 3
    block = model.blocks[0]
    with torch.no_grad():
        block.conv1.weight = torch.tensor([[[0.5, 1.0]]], dtype=torch.float64)  # through weight norm's right_inverse
        block.conv1.bias.zero_()
        block.conv2.weight = torch.tensor([[[1.0, -1.0]]], dtype=torch.float64)
        block.conv2.bias.fill_(0.5)
    out, state = model(torch.tensor([[[1.0], [-2.0], [3.0]]], dtype=torch.float64))
    assert state is None
    torch.testing.assert_close(out.flatten(), torch.tensor([1.0, 0.0, 3.0], dtype=torch.float64))


def causal_conv(x, w, b, d):
    """x [B, T, C_in], w [C_out, C_in, k]: y_t = b + sum_j w[:, :, j] x_{t - (k-1-j) d} (zero before t=0)."""
    B, T, _ = x.shape
    k = w.shape[-1]
    ys = []
    for t in range(T):
        y = b.expand(B, -1).clone()
        for j in range(k):
            s = t - (k - 1 - j) * d
            if s >= 0:
                y = y + x[:, s] @ w[:, :, j].T
        ys.append(y)
    return torch.stack(ys, 1)


def reference(model, x):
    for i, blk in enumerate(model.blocks):
        d = 2 ** i
        g1, v1 = blk.conv1.parametrizations.weight.original0, blk.conv1.parametrizations.weight.original1
        g2, v2 = blk.conv2.parametrizations.weight.original0, blk.conv2.parametrizations.weight.original1
        w1 = g1 * v1 / v1.norm(dim=(1, 2), keepdim=True)   # weight norm, per output channel
        w2 = g2 * v2 / v2.norm(dim=(1, 2), keepdim=True)
        y = relu(causal_conv(x, w1, blk.conv1.bias, d))
        y = relu(causal_conv(y, w2, blk.conv2.bias, d))
        res = x if blk.downsample is None else x @ blk.downsample.weight[:, :, 0].T + blk.downsample.bias
        x = relu(y + res)
    return x


def test_matches_a_loop_over_the_taps_in_float64():
    torch.manual_seed(0)
    model = cells.build("tcn", 3, 4, kernel_size=3, levels=2).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.8, 0.8)
    assert all(parametrize.is_parametrized(b.conv1, "weight") and parametrize.is_parametrized(b.conv2, "weight")
               for b in model.blocks)
    x = torch.randn(2, 11, 3, dtype=torch.float64, requires_grad=True)
    out, _ = model(x)
    ref = reference(model, x)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)
    w = torch.randn_like(out)
    params = [x, *model.parameters()]
    for g, r in zip(torch.autograd.grad((out * w).sum(), params), torch.autograd.grad((ref * w).sum(), params)):
        torch.testing.assert_close(g, r, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("max_len,k", [(30, 8), (1020, 8), (100, 3), (2, 2)])
def test_receptive_field_covers_max_len_with_fewest_levels(max_len, k):
    n = levels_for(max_len, k)
    assert receptive_field(k, n) >= max_len and (n == 1 or receptive_field(k, n - 1) < max_len)
    assert cells.build("tcn", 2, 3, kernel_size=k, max_len=max_len).levels == n
    assert receptive_field(8, 8) == 3571  # Bai et al.'s copy-memory TCN (k=8, 8 levels)


def test_first_input_reaches_last_output_at_max_len():
    torch.manual_seed(0)
    model = cells.build("tcn", 2, 3, kernel_size=2, max_len=16).double()
    with torch.no_grad():  # positive weights keep every relu open
        for p in model.parameters():
            p.uniform_(0.1, 0.5)
    x = torch.rand(1, 16, 2, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(model(x)[0][:, -1].sum(), x)
    assert (g[0, 0] != 0).all()
    with pytest.raises(cells.OptionError, match="needs the task's max_len"):
        cells.build("tcn", 2, 3)
