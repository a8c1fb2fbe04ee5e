"""IndRNN (Li et al. 2018) against its equations in float64, and its recurrent-weight constraint."""
import pytest
import torch

from gapbench import cells

B, T, I, H = 3, 10, 4, 5


def reference(cell, x, h):
    hs = []
    for x_t in x.unbind(1):
        h = torch.relu(x_t @ cell.weight_ih.T + cell.bias + cell.weight_hh * h)
        hs.append(h)
    return torch.stack(hs, 1)


def test_forward_and_gradients_match_float64_equations():
    torch.manual_seed(0)
    cell = cells.build("indrnn", I, H, max_len=T).double().eval()
    with torch.no_grad():
        cell.weight_ih.normal_(0, 1)
        cell.bias.uniform_(-0.5, 0.5)
        cell.weight_hh.uniform_(-1, 1)
    x = torch.randn(B, T, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.rand(B, H, dtype=torch.float64, requires_grad=True)
    out, final = cell(x, h0)
    ref = reference(cell, x, h0)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(final, ref[:, -1])
    w = torch.randn_like(out)
    params = [x, h0, *cell.parameters()]
    for a, b in zip(torch.autograd.grad((out * w).sum(), params), torch.autograd.grad((ref * w).sum(), params)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("max_len,gain", [(10, 2.0), (1000, 2.0), (50, 4.0)])
def test_recurrent_weights_are_kept_within_gain_to_the_one_over_T(max_len, gain):
    torch.manual_seed(0)
    cell = cells.build("indrnn", I, H, max_len=max_len, max_gain=gain)
    bound = gain ** (1 / max_len)
    assert cell.weight_hh.abs().max() <= bound and cell.weight_hh.min() >= 0  # U(0, 1), clipped
    with torch.no_grad():
        cell.weight_hh.copy_(torch.linspace(-3, 3, H))  # as if an optimiser step left the bound
    cell.train()
    cell(torch.randn(2, 3, I))
    assert cell.weight_hh.abs().max().item() == pytest.approx(bound)
    assert cell.weight_hh.abs().max().item() ** max_len == pytest.approx(gain, rel=1e-3)  # T-step gain <= max_gain
