"""minGRU (Feng et al. 2024) against its equations in float64: the log-space parallel scan equals the
sequential recurrence, in values and gradients, from a zero and from a given initial state."""
import pytest
import torch

from gapbench import cells

B, T, I, H = 3, 12, 4, 5


def g(v):
    return torch.where(v >= 0, v + 0.5, torch.sigmoid(v))


def reference(cell, x, h):
    W_z, W_h = cell.linear.weight.chunk(2)
    b_z, b_h = cell.linear.bias.chunk(2)
    hs = []
    for x_t in x.unbind(1):
        z = torch.sigmoid(x_t @ W_z.T + b_z)
        h = (1 - z) * h + z * g(x_t @ W_h.T + b_h)
        hs.append(h)
    return torch.stack(hs, 1)


@pytest.mark.parametrize("impl", ["scan", "loop"])
@pytest.mark.parametrize("given_state", [False, True])
def test_scan_and_loop_equal_the_recurrence_in_float64(impl, given_state):
    torch.manual_seed(0)
    cell = cells.build("mingru", I, H, impl=impl).double()
    with torch.no_grad():
        cell.linear.weight.uniform_(-2, 2)  # gates near 0 and 1, candidates on both sides of g's kink
        cell.linear.bias.uniform_(-1, 1)
    x = torch.randn(B, T, I, dtype=torch.float64, requires_grad=True)
    h0 = (torch.randn(B, H, dtype=torch.float64) if given_state else torch.zeros(B, H, dtype=torch.float64))
    h0.requires_grad_()
    out, final = cell(x, h0 if given_state else None)
    ref = reference(cell, x, h0)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(final, ref[:, -1])
    w = torch.randn_like(out)
    params = [x, *cell.parameters()] + ([h0] if given_state else [])
    for a, b in zip(torch.autograd.grad((out * w).sum(), params), torch.autograd.grad((ref * w).sum(), params)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


def test_float32_scan_close_to_float64_at_length_500():
    torch.manual_seed(0)
    cell = cells.build("mingru", I, H).double()
    x = torch.randn(2, 500, I, dtype=torch.float64)
    ref = reference(cell, x, torch.zeros(2, H, dtype=torch.float64))
    got = cell.float()(x.float())[0].double()
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
